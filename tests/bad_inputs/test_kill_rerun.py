"""kill -9 of the whole Snakemake process group mid-run, ``--unlock``, rerun with ``--rerun-incomplete``: the
results equal an uninterrupted run (training curve losses and AUC tables bit for bit; scores to float32 rounding,
1e-5 relative: MKL does not promise bit-identical GEMMs from one process to the next)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file

from common import ROOT

OVERLAY = {"methods": {"tracin": {}, "datainf": {}}, "layers": {"enabled": False}}
TARGET = "detection_table"  # the rule: splits, fine-tune, gradients, scores, metrics, table


def _cmd(workdir: Path, *extra: str) -> list[str]:
    overlay = workdir / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({**OVERLAY, "results_dir": str(workdir / "results")}))
    return [sys.executable, "-m", "snakemake", *(extra or (TARGET,)), "--cores", "2", "--directory", str(workdir),
            "--configfile", str(ROOT / "configs" / "test.yaml"), str(overlay)]


def _run(workdir: Path, *extra: str) -> None:
    proc = subprocess.run(_cmd(workdir, *extra), cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]


def _results(workdir: Path) -> dict:
    out = {}
    for path in sorted(workdir.glob("results/**/scores/*.safetensors")):
        out[path.name] = {k: v.numpy() for k, v in load_file(path).items()}
    for path in sorted(workdir.glob("results/**/training_curve.csv")):
        out[path.name] = pd.read_csv(path)[["epoch", "train_loss", "val_loss", "best"]].to_csv()
    for path in sorted(workdir.glob("results/**/tables/detection.csv")):
        out[path.name] = pd.read_csv(path)[["task", "method", "auc", "detection_at_20pct"]].to_csv()
    return out


@pytest.mark.slow
def test_kill_nine_then_unlock_and_rerun_is_bit_identical(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir(), killed.mkdir()
    _run(clean)
    reference = _results(clean)
    assert any(k.endswith(".safetensors") for k in reference) and "detection.csv" in reference

    proc = subprocess.Popen(_cmd(killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + 900
    while not list(killed.glob("results/**/adapter.safetensors")) and time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and every job it started
    proc.wait()
    assert not list(killed.glob("results/**/tables/detection.csv"))
    _run(killed, "--unlock")
    _run(killed, TARGET, "--rerun-incomplete")  # the killed job's outputs are marked incomplete
    result = _results(killed)
    assert sorted(result) == sorted(reference)
    for name, value in reference.items():
        if isinstance(value, dict):  # a score file: the same blocks, equal to float32 rounding
            assert sorted(result[name]) == sorted(value), name
            for block, ref in value.items():
                np.testing.assert_allclose(result[name][block], ref, rtol=1e-5,
                                           atol=1e-7 * float(np.abs(ref).max(initial=0.0)),
                                           err_msg=f"{name}:{block}")
        else:
            assert result[name] == value, name
