"""The Snakemake DAG: lint, dry runs of every profile, and an end-to-end run of the tiny test config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors import safe_open

from common import ROOT, load_test_config, needs_shared, snakemake
from inflbench.config import profile_configfiles
from inflbench.methods.ekfac import kronfluence_available
from inflbench.paths import Layout

TEST_CONFIG = load_test_config()


def _planned_jobs(output: str) -> dict[str, int]:
    """Job counts from Snakemake's 'Job stats' table of a dry run."""
    jobs, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("job "):
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if not parts:
                break
            if parts[0] not in ("-----------------", "total") and len(parts) == 2 and parts[1].isdigit():
                jobs[parts[0]] = int(parts[1])
    return jobs


def test_lint_is_clean(tmp_path):
    proc = snakemake("--lint", workdir=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


PROFILES = sorted(p.name for p in (ROOT / "configs").glob("*.yaml") if not p.name.endswith(".block.yaml"))
#: plans of 12-16k jobs: 1-1.5 min each on 2 cores
LARGE_PLANS = {"paper-layers.yaml", "paper-layers-llm.yaml"}


@pytest.mark.parametrize("profile", [pytest.param(p, marks=pytest.mark.slow) if p in LARGE_PLANS else p
                                     for p in PROFILES])
def test_dry_run_every_profile(tmp_path, profile):
    text = (ROOT / "configs" / profile).read_text()
    if "diffusion_unet" in text:
        pytest.importorskip("diffusers", reason="diffusion profiles need: pip install 'inflbench[diffusion]'")
    if "ekfac" in yaml.safe_load(text).get("methods", {}) and not kronfluence_available():
        pytest.skip("profile uses ekfac; kronfluence not installed (make setup installs it)")
    # an overlay on other profiles names them in its usage line: --configfile configs/base.yaml configs/<profile>
    files = [str(ROOT / f) for f in profile_configfiles(profile, ROOT)]
    if "../shared" in text:  # relative to the repository root, where users run it
        glue = needs_shared("glue")
        (tmp_path / "abs.yaml").write_text(yaml.safe_dump({"data": {"glue_dir": str(glue)}}))
        files.append(str(tmp_path / "abs.yaml"))
    proc = snakemake("-n", "--configfile", *files, workdir=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "total" in proc.stdout


def test_slurm_profile_dry_run(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    proc = snakemake("-n", "--profile", str(ROOT / "profiles" / "slurm"), workdir=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _planned_jobs(proc.stdout)["finetune"] == 1


def test_default_dag_shape(tmp_path):
    proc = snakemake("-n", workdir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    jobs = _planned_jobs(proc.stdout)
    n_methods = len(yaml.safe_load((ROOT / "config.yaml").read_text())["methods"])
    assert jobs["prepare_data"] == 1 and jobs["finetune"] == 1 and jobs["gradients"] == 2
    assert jobs["scores"] == n_methods and jobs["detection_metrics"] == n_methods


@pytest.mark.slow
def test_tiny_run_outputs(tiny_run):
    _, layout, _ = tiny_run
    methods = list(TEST_CONFIG["methods"])
    sizes = TEST_CONFIG["data"]["sizes"]
    train = pd.read_csv(layout.split(task="generated", split="train"))
    assert len(train) == sizes["train"] and train["flipped"].sum() == round(0.2 * sizes["train"])
    curve = pd.read_csv(layout.curve(task="generated"))
    assert list(curve["epoch"]) == [0, 1] and curve["best"].sum() >= 1
    index = json.loads(Path(layout.gradient_index(task="generated", split="train")).read_text())
    assert index["n"] == sizes["train"] and len(index["blocks"]) == 25
    with safe_open(layout.gradients(task="generated", split="val"), framework="pt") as handle:
        assert handle.get_tensor("classifier").shape == (sizes["val"], 2, 385)
    for method in methods:
        with safe_open(layout.scores(task="generated", method=method), framework="pt") as handle:
            total = handle.get_tensor("total")
            assert total.shape == (sizes["train"], sizes["val"]) and torch.isfinite(total).all()
            if method != "exact_joint":
                blocks = [handle.get_tensor(k) for k in handle.keys() if k != "total"]
                assert total.dtype == torch.float64 and blocks[0].dtype == torch.float32  # scores.block_dtype
                # float32 blocks: each rounded to ~6e-8 of itself, so the sum is off by that much of sum |block|
                stacked = torch.stack(blocks).double()
                atol = 1e-6 * float(stacked.abs().sum(0).max()) + 1e-12
                torch.testing.assert_close(stacked.sum(0), total, rtol=1e-5, atol=atol)
        det = pd.read_csv(layout.detection(task="generated", method=method))
        assert det["fraction_detected"].is_monotonic_increasing and det["fraction_detected"].iloc[-1] == 1.0
    table = pd.read_csv(layout.detection_table())
    assert sorted(table["method"]) == sorted(methods)
    assert table["auc"].between(0, 1).all() and (table["seconds"] >= 0).all()
    assert Path(layout.detection_figure(task="generated")).stat().st_size > 10_000
    provenance = json.loads(Path(layout.detection_table()).with_name("detection.config.json").read_text())
    assert provenance["data"]["sizes"] == sizes
    log = Path(layout.root / "logs" / "finetune" / "generated.log").read_text()
    assert "epoch 0/1:" in log and "epoch 1/1:" in log and "fine-tune: 3/3 steps (100%)" in log  # progress
    assert "LOAD REPORT" not in log and "FutureWarning" not in log  # third-party load noise silenced
    top = pd.read_csv(layout.topk(task="generated", method="tracin"))
    assert list(top["kind"]) == ["harmful"] * 10 + ["helpful"] * 10 and top["text"].str.len().min() > 0
    board = pd.read_csv(layout.leaderboard())
    assert sorted(board["method"]) == sorted(methods) and board["rank"].is_monotonic_increasing


@pytest.mark.slow
def test_tiny_run_rerun_and_param_change(tiny_run, tmp_path):
    work, _, args = tiny_run
    proc = snakemake("-n", *args, workdir=work)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"methods": {"datainf": {"damping": 0.01}}}))
    proc = snakemake("-n", *args[:2], str(overlay), *args[2:], workdir=work)
    shards = TEST_CONFIG["scores"]["shards"]  # datainf is block-separable: shard jobs plus their merge
    scoring = {"scores_shard": shards, "scores_merge": 1} if shards > 1 else {"scores": 1}
    assert _planned_jobs(proc.stdout) == {**scoring, "detection_metrics": 1, "detection_figure": 1,
                                          "detection_table": 1, "leaderboard": 1, "topk": 1,
                                          "all": 1}


@pytest.mark.slow
def test_tiny_run_report(tiny_run):
    work, layout, args = tiny_run
    report = work / "report.html"
    proc = snakemake("--report", str(report), *args, workdir=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = report.read_text(errors="ignore")
    assert "detection" in html and report.stat().st_size > 100_000
    assert "1. Leaderboard" in html and "2. Flagged training examples" in html and "auc_mean" in html


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_sst2_run(tmp_path):
    glue = needs_shared("glue", "SST-2")
    overlay = tmp_path / "sst2.yaml"
    overlay.write_text(yaml.safe_dump({
        "run": "sst2", "results_dir": str(tmp_path / "results"),
        "data": {"source": "glue_dir", "glue_dir": str(glue.parent), "tasks": ["SST-2"],
                 "sizes": {"train": 40, "val": 16, "test": 16}},
        "methods": {"tracin": {}, "exact_block": {}}}))
    proc = snakemake("--cores", "2", "--configfile", str(ROOT / "configs" / "test.yaml"), str(overlay),
                     workdir=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    layout = Layout(tmp_path / "results", "sst2")
    table = pd.read_csv(layout.detection_table())
    assert set(table["method"]) >= {"tracin", "exact_block"} and (table["task"] == "SST-2").all()
    train = pd.read_csv(layout.split(task="SST-2", split="train"))
    assert len(train) == 40 and np.isin(train["clean_label"], [0, 1]).all()


@pytest.mark.parametrize("first", [True, False])
def test_detection_path_runs_first(tmp_path, first):
    """detection.first: the synthetic study waits for the detection table (so a multi-thread fine-tune is not
    starved by 1-thread synthetic cells); false: `snakemake synthetic` plans the synthetic study alone."""
    overlay = tmp_path / "first.yaml"
    overlay.write_text(yaml.safe_dump({"detection": {"first": first}, "results_dir": str(tmp_path / "results")}))
    proc = snakemake("-n", "synthetic", "--configfile", str(ROOT / "configs" / "test.yaml"), str(overlay),
                     workdir=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = _planned_jobs(proc.stdout)
    assert jobs["synthetic_cell"] == 1
    assert ("finetune" in jobs and "detection_table" in jobs) == first
