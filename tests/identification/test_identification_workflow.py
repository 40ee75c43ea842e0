"""Data -> fine-tune -> gradients -> scores -> identification metrics, per family; grids; the Snakemake DAG."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from idtools import ROOT, needs_diffusers, profile
from inflbench import stages
from inflbench.config import validate_config
from inflbench.errors import ConfigError
from inflbench.studies.identification.grid import GRIDS, load_grid, share_upstream
from inflbench.studies.identification.stages import (stage_identification, stage_identification_figure,
                                                      stage_identification_table)
from inflbench.paths import Layout

WIRED = "identification" in (ROOT / "Snakefile").read_text()

TINY = {
    "causal-lm.yaml": {"data": {"tasks": ["math_reasoning"], "sizes": {"train": 16, "val": 4, "test": 8}},
                       "model": {"max_length": 40}, "train": {"epochs": 2, "batch_size": 8},
                       "gradients": {"batch_size": 8}},
    "diffusion.yaml": {"data": {"sizes": {"train": 20, "val": 10, "test": 20}},
                       "model": {"options": {"noise_draws": 1}}, "train": {"epochs": 1, "batch_size": 10},
                       "gradients": {"batch_size": 10}},
}
METHODS = {"tracin": {}, "datainf": {}, "rrinf": {"sampling": "layer", "iterations": 200}}


def tiny_config(name: str, results_dir) -> dict:
    needs_diffusers(name)
    cfg = profile(name, **TINY[name], results_dir=str(results_dir), device="cpu")
    cfg["methods"] = METHODS
    return validate_config(cfg)


@pytest.mark.parametrize("name", ["causal-lm.yaml", "diffusion.yaml"])
def test_stages_end_to_end(tmp_path, name):
    cfg = tiny_config(name, tmp_path)
    P = Layout.from_config(cfg)
    task = cfg["data"]["tasks"][0]
    splits = {s: P.split(task=task, split=s) for s in ("train", "val", "test")}
    run = {k: cfg[k] for k in ("model", "train", "gradients", "seed", "device")}
    stages.stage_prepare_data({}, splits, {"data": cfg["data"], "task": task, "seed": cfg["seed"]})
    stages.stage_finetune(splits, {"adapter": P.adapter(task=task), "curve": P.curve(task=task),
                                   "predictions": P.val_predictions(task=task)}, run)
    for split in ("train", "test"):
        stages.stage_gradients({**splits, "adapter": P.adapter(task=task)},
                               {"grads": P.gradients(task=task, split=split)}, {**run, "split": split})
    index = json.loads(open(P.gradient_index(task=task, split="test")).read())
    assert index["n"] == cfg["data"]["sizes"]["test"]
    summaries, points = [], {}
    for method, params in cfg["methods"].items():
        stages.stage_scores({"train": P.gradients(task=task, split="train"),
                             "target": P.gradients(task=task, split="test")},
                            {"scores": P.scores(task=task, method=method)}, {"method": method, "method_params": params})
        points[method] = P.identification(task=task, method=method)
        summaries.append(P.identification_summary(task=task, method=method))
        summary = stage_identification({"scores": P.scores(task=task, method=method), **splits},
                                       {"points": points[method], "summary": summaries[-1]},
                                       {"method": method, "task": task, "model": cfg["model"]})
        assert 0 <= summary["auc_mean"] <= 1 and 0 <= summary["recall_mean"] <= 1
        assert summary["n_test"] == cfg["data"]["sizes"]["test"] and summary["seconds"] > 0
    per_point = pd.read_csv(points["tracin"])
    assert len(per_point) == cfg["data"]["sizes"]["test"] and per_point["s"].min() >= 1
    table = stage_identification_table({"summaries": summaries}, {"table": P.identification_table()}, {"config": {}})
    assert list(table["method"]) == list(METHODS) and table["auc"].str.contains("±").all()
    stage_identification_figure({"points": list(points.values())}, {"figure": P.identification_figure(task=task)},
                                {"methods": list(points), "task": task})
    assert os.path.getsize(P.identification_figure(task=task)) > 1000
    # scores against the wrong split are refused with a clear message
    with pytest.raises(ValueError, match="computed against the test split"):
        stage_identification({"scores": P.scores(task=task, method="tracin"), "train": splits["train"],
                              "test": splits["val"]},
                             {"points": str(tmp_path / "x.csv"), "summary": str(tmp_path / "x.json")},
                             {"method": "tracin", "task": task})


def test_grids_are_valid_overlays():
    from idtools import merge

    needs_diffusers()
    for name, settings in GRIDS.items():
        base = profile(f"{name}.yaml")
        for overlay in settings.values():
            validate_config(merge(base, overlay))
    assert list(GRIDS["ablation-rank"]) == ["r2", "r8", "r12", "r24"]
    assert [k for k in GRIDS["ablation-rrinf-sampling"] if k.startswith("mb")][-1] == "mb2048"


def test_grid_files_and_sharing(tmp_path):
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"settings": {"a": {"methods": {"rrinf": {}}}}}))
    assert load_grid(str(tmp_path / "g.yaml")) == ("g", {"a": {"methods": {"rrinf": {}}}})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"setting": {}}))
    with pytest.raises(ConfigError, match="bad.yaml:setting"):
        load_grid(str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match="--grid"):
        load_grid("no-such-grid")
    src = tmp_path / "run-a"
    for rel in ("t/data/train.csv", "t/model/adapter.safetensors", "t/gradients/train.safetensors",
                "t/scores/tracin.safetensors", "logs/gradients/t_train.log"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    share_upstream(src, tmp_path / "run-b")
    shared = sorted(str(p.relative_to(tmp_path / "run-b")) for p in (tmp_path / "run-b").rglob("*") if p.is_file())
    assert shared == ["t/data/train.csv", "t/gradients/train.safetensors", "t/model/adapter.safetensors"]
    assert (tmp_path / "run-b/t/model/adapter.safetensors").stat().st_ino == (src / "t/model/adapter.safetensors").stat().st_ino
    # scores and metrics of the methods a grid leaves unchanged are shared too, the others are not
    for rel in ("t/scores/rrinf.safetensors", "t/metrics/identification_tracin.csv",
                "t/metrics/identification_summary_tracin.json", "t/metrics/identification_summary_rrinf.json"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    share_upstream(src, tmp_path / "run-c", keep_methods=["tracin"])
    shared = sorted(str(p.relative_to(tmp_path / "run-c")) for p in (tmp_path / "run-c").rglob("*") if p.is_file())
    assert shared == ["t/data/train.csv", "t/gradients/train.safetensors", "t/metrics/identification_summary_tracin.json",
                      "t/metrics/identification_tracin.csv", "t/model/adapter.safetensors", "t/scores/tracin.safetensors"]


def test_grid_table_layout(tmp_path):
    from inflbench.studies.identification.grid import grid_figure, grid_table

    rows = [{"setting": s, "task": "digits", "method": m, "auc": "x", "recall": "y", "seconds": 1.0, "auc_mean": a,
             "auc_std": 0.1, "recall_mean": a - 0.2, "recall_std": 0.05, "model": "tiny:unet"}
            for s, a in (("mb1", 0.6), ("mb64", 0.634)) for m in ("tracin", "rrinf")]
    table = grid_table(pd.DataFrame(rows), "rrinf")
    assert list(table["setting"]) == ["mb1", "mb64"] and list(table.columns[:5]) == ["task", "setting", "auc",
                                                                                       "recall", "seconds"]
    assert table["auc_mean"].tolist() == [0.6, 0.634]
    grid_figure(table, "rrinf", "t", tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 1000


def test_grid_over_seeds(tmp_path):
    from scipy import stats

    from inflbench.studies.identification.grid import grid_table, read_run_tables, seeds_aggregate

    # sharing links every replicate seed's upstream files (seed<N>/<task>/...)
    src = tmp_path / "run-a"
    for rel in ("seed0/t/data/train.csv", "seed1/t/data/train.csv", "seed1/t/model/adapter.safetensors",
                "seed1/t/scores/rrinf.safetensors"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    share_upstream(src, tmp_path / "run-b")
    shared = sorted(str(p.relative_to(tmp_path / "run-b")) for p in (tmp_path / "run-b").rglob("*") if p.is_file())
    assert shared == ["seed0/t/data/train.csv", "seed1/t/data/train.csv", "seed1/t/model/adapter.safetensors"]
    # per-seed tables are read with a seed column and aggregated over seeds per (task, setting, method)
    aucs = {0: 0.61, 1: 0.70, 2: 0.64}
    for seed, auc in aucs.items():
        (src / f"seed{seed}" / "tables").mkdir(parents=True, exist_ok=True)
        pd.DataFrame([{"task": "digits", "method": m, "auc_mean": auc + k, "auc_std": 0.3, "recall_mean": auc / 2,
                       "recall_std": 0.1, "seconds": 2.0 + seed} for k, m in ((0.0, "rrinf"), (0.1, "tracin"))]
                     ).to_csv(src / f"seed{seed}" / "tables" / "identification.csv", index=False)
    stacked = read_run_tables(src, [0, 1, 2]).assign(setting="mb1")
    assert sorted(stacked["seed"]) == [0, 0, 1, 1, 2, 2]
    table = grid_table(stacked, "rrinf")
    values = np.array(list(aucs.values()))
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
    row = table.iloc[0]
    assert len(table) == 1 and row["n_seeds"] == 3 and row["seconds"] == pytest.approx(3.0)
    assert row["auc_mean"] == pytest.approx(values.mean()) and row["auc_std"] == pytest.approx(values.std(ddof=1))
    assert (row["auc_ci_low"], row["auc_ci_high"]) == pytest.approx((values.mean() - half, values.mean() + half))
    assert row["recall_mean"] == pytest.approx(values.mean() / 2) and row["auc"] == "65.0% ± 4.6%"
    assert seeds_aggregate(stacked).set_index("method").loc["tracin", "auc_mean"] == pytest.approx(values.mean() + 0.1)


def test_grid_bad_setting_fails_before_any_run(tmp_path):
    from inflbench.errors import InputError
    from inflbench.studies.identification.grid import run_grid

    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"method": "rrinf", "settings": {
        "ok": {"methods": {"rrinf": {"sampling": "minibatch", "batch_size": 8}}},
        "bad": {"methods": {"rrinf": {"sampling": "minibatch", "batch_size": 0}}}}}))
    with pytest.raises(InputError, match="grid setting 'bad': config key 'methods.rrinf'.*batch_size"):
        run_grid([str(ROOT / "configs" / "causal-lm.yaml")], str(tmp_path / "g.yaml"), str(tmp_path), workflow_dir=ROOT)
    assert not (tmp_path / "causal-lm-g-ok").exists()
    with pytest.raises(ConfigError, match="--only.*'r3'"):
        run_grid([str(ROOT / "configs" / "causal-lm.yaml")], "ablation-rank", str(tmp_path), only=["r3"],
                 workflow_dir=ROOT)


def _snakemake(*args, workdir, timeout=600):
    return subprocess.run([sys.executable, "-m", "snakemake", "--directory", str(workdir), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow
@pytest.mark.skipif(not WIRED, reason="the Snakefile does not include rules/identification.smk yet")
@pytest.mark.parametrize("name", ["causal-lm.yaml", "diffusion.yaml"])
def test_snakemake_end_to_end(tmp_path, name):
    needs_diffusers(name)
    overlay = {**TINY[name], "run": "tiny", "methods": {"rrinf": METHODS["rrinf"]}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(overlay))
    results = tmp_path / "results"
    proc = _snakemake("identification", "--cores", "2", "--configfile", str(ROOT / "configs" / name),
                      str(tmp_path / "tiny.yaml"), "--config", f"results_dir={results}", workdir=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = pd.read_csv(results / "tiny" / "tables" / "identification.csv")
    assert "rrinf" in set(table["method"]) and table["auc_mean"].between(0, 1).all()
    assert np.isfinite(table["seconds"]).all()
    task = TINY[name]["data"].get("tasks", ["digits"])[0]
    assert (results / "tiny" / "figures" / f"identification_{task}.png").stat().st_size > 1000


@pytest.mark.skipif(not WIRED, reason="the Snakefile does not include rules/identification.smk yet")
def test_grid_driver_dry_run(tmp_path):
    needs_diffusers()
    from inflbench.studies.identification.grid import run_grid

    run_grid([str(ROOT / "configs" / "ablation-rrinf-sampling.yaml")], "ablation-rrinf-sampling", str(tmp_path),
             only=["layer", "mb64"], dry_run=True, snakemake_args=["--directory", str(tmp_path), "-q"],
             workflow_dir=ROOT)
    overlays = tmp_path / "grids" / "ablation-rrinf-sampling"
    assert sorted(p.name for p in overlays.iterdir()) == ["layer.yaml", "mb64.yaml"]
    assert not (tmp_path / "ablation-rrinf-sampling-layer").exists()  # a dry run writes no results
    assert yaml.safe_load((overlays / "mb64.yaml").read_text())["methods"]["rrinf"]["batch_size"] == 64


@pytest.mark.skipif(not WIRED, reason="the Snakefile does not include rules/identification.smk yet")
def test_bad_input_stops_snakemake_with_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"model": {"lora": {"target_modules": ["query"]}}}))
    proc = _snakemake("-n", "--configfile", str(ROOT / "configs" / "causal-lm.yaml"), str(tmp_path / "bad.yaml"),
                      workdir=tmp_path)
    assert proc.returncode != 0
    assert "config key 'model.lora.target_modules': 'query' matches no module of the tiny Llama" in proc.stderr
