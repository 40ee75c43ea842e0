"""Data -> fine-tune -> gradients -> scores -> identification metrics, per family; the Snakemake DAG."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml

from common import snakemake
from idtools import ROOT, needs_diffusers, profile
from inflbench import stages
from inflbench.config import validate_config
from inflbench.studies.identification.stages import (stage_identification, stage_identification_figure,
                                                      stage_identification_table)
from inflbench.models.pretrain import enabled as pretrain_enabled, with_checkpoint as with_pretrain_checkpoint
from inflbench.paths import Layout

WIRED = "identification" in (ROOT / "Snakefile").read_text()

TINY = {
    "causal-lm.yaml": {"data": {"tasks": ["math_reasoning"], "sizes": {"train": 16, "val": 4, "test": 8}},
                       "model": {"max_length": 40, "options": {"pretrain": {"steps": 4, "corpus_size": 64,
                                                                            "heldout_size": 8, "eval_every": 2}}},
                       "train": {"epochs": 2, "batch_size": 8},
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
    cfg = with_pretrain_checkpoint(cfg, P.pretrained())  # as rules/common.smk does
    task = cfg["data"]["tasks"][0]
    splits = {s: P.split(task=task, split=s) for s in ("train", "val", "test")}
    run = {k: cfg[k] for k in ("model", "train", "gradients", "seed", "device")}
    stages.stage_prepare_data({}, splits, {"data": cfg["data"], "task": task, "seed": cfg["seed"]})
    if pretrain_enabled(cfg["model"]):
        stages.stage_pretrain({"splits": list(splits.values())},
                              {"weights": P.pretrained(), "curve": P.pretrain_curve()}, {"model": cfg["model"]})
        assert list(pd.read_csv(P.pretrain_curve())["step"]) == [0, 2, 4]
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
        summary = stage_identification({"scores": P.scores(task=task, method=method), **splits,
                                        "curve": P.curve(task=task)},
                                       {"points": points[method], "summary": summaries[-1]},
                                       {"method": method, "task": task, "model": cfg["model"]})
        assert 0 <= summary["auc_mean"] <= 1 and 0 <= summary["recall_mean"] <= 1
        assert summary["n_test"] == cfg["data"]["sizes"]["test"] and summary["seconds"] > 0
        if name == "causal-lm.yaml":  # the fine-tuned model's answers on the test split
            assert 0 <= summary["model_test_exact_match"] <= summary["model_test_token_accuracy"] <= 1
        else:  # a diffusion model generates no answers to score
            assert "model_test_exact_match" not in summary
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


def _snakemake(*args, workdir):
    return snakemake(*args, workdir=workdir, timeout=600)


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
def test_bad_input_stops_snakemake_with_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"model": {"lora": {"target_modules": ["query"]}}}))
    proc = _snakemake("-n", "--configfile", str(ROOT / "configs" / "causal-lm.yaml"), str(tmp_path / "bad.yaml"),
                      workdir=tmp_path)
    assert proc.returncode != 0
    assert "config key 'model.lora.target_modules': 'query' matches no module of the tiny Llama" in proc.stderr
