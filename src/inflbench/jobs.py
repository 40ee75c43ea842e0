"""The one entry point of every ``scripts/`` adapter: ``run(snakemake, stage)``.

A stage is a plain function ``stage(inputs, outputs, params)`` of three mappings (tests call it directly):
``inputs`` / ``outputs`` are the rule's named files (a list for an ``expand``), ``params`` the rule's params
plus its wildcards. ``run`` sends everything the call prints (stdout, stderr, ``logging``, warnings of C
extensions, and the traceback of an exception) into the job's log file. On an error it prints one line to the
terminal -- ``inflbench: invalid input: ...`` for bad input, ``inflbench: <Type>: <message> (see <log>)``
otherwise --, removes the outputs written so far and exits non-zero. An output ``<name>.html`` the stage did
not write is rendered (for the report) from the output ``<name>.csv`` or ``<name>.md`` beside it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Mapping

from inflbench.errors import InputError
from inflbench.resources import bound_freed_memory

Stage = Callable[[dict, dict, dict], object]


def _plain(value):
    return value if isinstance(value, str) else [str(v) for v in value]


def mappings(snakemake) -> tuple[dict, dict, dict]:
    """(inputs, outputs, params) of a Snakemake script object as plain dicts."""
    inputs = {k: _plain(v) for k, v in snakemake.input.items()}
    outputs = {k: _plain(v) for k, v in snakemake.output.items()}
    params = dict(snakemake.params.items())
    for key, value in snakemake.wildcards.items():
        if key in params:
            raise ValueError(f"rule param {key!r} shadows the wildcard of the same name")
        params[key] = value
    return inputs, outputs, params


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(int(threads), 1))


@contextlib.contextmanager
def logging_to(log_path: str | Path):
    """Send stdout and stderr (Python objects and file descriptors 1, 2) and the ``logging`` root to
    ``log_path``; yields the terminal's stderr for messages meant for the user."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(2), "w")
    with open(log_path, "w") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        logging.basicConfig(stream=handle, level=logging.INFO, force=True,
                            format="%(asctime)s %(levelname)s %(message)s")
        try:
            with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
                yield terminal
        finally:
            handle.flush()
            logging.basicConfig(stream=sys.__stderr__, force=True)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.flush()


def error_line(exc: BaseException, log_path: str | Path) -> str:
    if isinstance(exc, InputError):
        return f"inflbench: invalid input: {exc}"
    return f"inflbench: {type(exc).__name__}: {exc} (see {log_path})"


def remove_outputs(outputs: Mapping) -> None:
    for value in outputs.values():
        for path in [value] if isinstance(value, str) else value:
            path = Path(path)
            if path.is_file() or path.is_symlink():
                path.unlink()
                side = path.with_name(path.stem + ".config.json")  # provenance sidecar
                if side.is_file():
                    side.unlink()


def render_html_outputs(outputs: Mapping) -> None:
    """Write each missing ``x.html`` output from the ``x.csv`` / ``x.md`` output of the same name."""
    from inflbench.htmltables import render

    paths = [Path(p) for v in outputs.values() for p in ([v] if isinstance(v, str) else v)]
    for target in (p for p in paths if p.suffix == ".html" and not p.exists()):
        source = next((p for suffix in (".md", ".csv") for p in paths
                       if p.suffix == suffix and p.with_suffix(".html") == target), None)
        if source is None:
            raise ValueError(f"{target}: no .csv or .md output of the same name to render")
        render(source, target)


def call(stage: Stage, inputs: dict, outputs: dict, params: dict, log_path: str | Path,
         threads: int | None = None) -> None:
    """Run ``stage`` with its output going to ``log_path``; see the module docstring for errors."""
    terminal = None
    try:
        with logging_to(log_path) as terminal:
            try:
                if threads is not None:
                    set_threads(threads)
                bound_freed_memory()
                stage(inputs, outputs, params)
                render_html_outputs(outputs)
            except BaseException as exc:
                traceback.print_exc()
                line = error_line(exc, log_path)
                print(line, flush=True)
                raise
    except (Exception, KeyboardInterrupt) as exc:
        remove_outputs(outputs)
        print(error_line(exc, log_path), file=terminal or sys.stderr, flush=True)
        if terminal is not None:
            terminal.close()
        sys.exit(1)
    if terminal is not None:
        terminal.close()


def run(snakemake, stage: Stage, torch_threads: bool = False) -> None:
    """The whole body of a ``scripts/`` adapter. ``torch_threads``: set torch's thread count to the rule's."""
    inputs, outputs, params = mappings(snakemake)
    call(stage, inputs, outputs, params, snakemake.log[0], snakemake.threads if torch_threads else None)
