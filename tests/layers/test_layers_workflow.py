"""End-to-end: the layer study on the tiny test profile (1 seed, 1 method, 1 group) into a tmp results dir."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from common import ROOT
from inflbench.paths import Layout

OVERLAY = {"layers": {"enabled": True, "methods": ["tracin"], "groups": {"L0-2": [r"layer\.[0-2]\."]},
                      "aggregations": ["mean", "vote"], "retrain_seeds": [0], "baselines": ["random"],
                      "selection_keep": [0.5], "logo_groups": 2}}


def _snakemake(work, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", "--directory", str(work), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow
def test_tiny_layer_study(tmp_path):
    overlay = tmp_path / "layers.yaml"
    overlay.write_text(yaml.safe_dump(OVERLAY))
    results = tmp_path / "results"
    proc = _snakemake(tmp_path, "--cores", "2", "layers_tables", "layers_figures", "--configfile",
                      str(ROOT / "configs" / "test.yaml"), str(overlay), "--config", f"results_dir={results}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    P = Layout(results, "test")
    runs = pd.read_csv(P.layer_table(table="runs"))
    assert set(runs["kind"]) == {"filter", "random", "full"}
    assert runs["best_test_accuracy"].between(0, 1).all()
    ranking = pd.read_csv(P.layer_table(table="ranking"))
    assert {"tracin|L0-2|mean", "tracin|L0-2|vote", "Random"} <= set(ranking["config"])
    ndr = pd.read_csv(P.layer_table(table="ndr"))
    assert set(ndr["group"]) == {"L0-2", "all"} and ndr["ndr"].between(0, 1).all()
    assert len(pd.read_csv(P.layer_table(table="logo"))) == 1
    assert "Random" in pd.read_csv(P.layer_table(table="selection"))["method"].tolist()
    canc = pd.read_csv(P.layer_table(table="cancellation"))
    assert {"block", "group"} == set(canc["level"])
    for figure in ("accuracy", "ndr_blocks", "aggregation_change", "noise_deciles"):
        assert (results / "test" / "figures" / f"layers_{figure}.png").stat().st_size > 1000
    summary = json.loads(next((results / "test").rglob("retrain/filter/**/seed0.json")).read_text())
    assert summary["n_train"] == 48 - round(0.3 * 48)
    assert not list((results / "test").rglob("retrain/**/*.safetensors"))  # no retrain checkpoints
    # bad input fails before any job runs, with one line naming the key
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"layers": {**OVERLAY["layers"], "groups": {"X": [r"layer\.99\."]}}}))
    proc = _snakemake(tmp_path, "-n", "--configfile", str(ROOT / "configs" / "test.yaml"), str(bad))
    assert proc.returncode != 0 and "config key 'layers.groups.X'" in proc.stdout + proc.stderr
