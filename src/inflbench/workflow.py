"""Glue used by the scripts/ adapters: logging to the rule's log file, provenance sidecars."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from inflbench.paths import sidecar


@contextlib.contextmanager
def rule_logging(log_path: str):
    """Send stdout, stderr and the ``logging`` root to the rule's ``log:`` file."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        logging.basicConfig(stream=handle, level=logging.INFO, force=True,
                            format="%(asctime)s %(levelname)s %(message)s")
        yield handle


def write_table(frame: pd.DataFrame, path: str | Path, provenance: dict) -> None:
    """CSV table plus its config sidecar."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    write_provenance(path, provenance)


def write_provenance(path: str | Path, provenance: dict) -> None:
    sidecar(path).write_text(json.dumps(provenance, indent=1, sort_keys=True, default=str))


def as_dict(obj) -> dict:
    """Snakemake's Namedlist/params -> plain dict (recursively JSON-able)."""
    return json.loads(json.dumps(dict(obj), default=str))


def log_line(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def named(namedlist) -> dict[str, str]:
    """Named entries of a Snakemake input/output list as a plain dict."""
    return {k: v for k, v in namedlist.items()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(int(threads), 1))
