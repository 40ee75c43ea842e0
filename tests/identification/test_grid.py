"""Ablation grids inside the one workflow: settings as a wildcard, shared upstream stages, the grid table."""

import re

import pandas as pd
import pytest
import yaml

from common import snakemake
from idtools import needs_diffusers, profile
from inflbench.config import validate_config
from inflbench.errors import InputError
from inflbench.studies.identification.grid import GRIDS, grid_figure, grid_table, setting_configs

# a standalone tiny identification run (config.yaml is not merged in): one task, two methods
TINY = {
    "standalone": True, "run": "g", "device": "cpu", "identification": {"enabled": True},
    "data": {"source": "lm_generated", "tasks": ["math_reasoning"], "sizes": {"train": 16, "val": 4, "test": 8},
             "noise_fraction": 0.0, "options": {"prompt_template": "{input}\nanswer:"}},
    "model": {"family": "causal_lm", "name_or_path": "tiny:llama", "max_length": 40,
              "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
              "options": {"tiny": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                   "num_key_value_heads": 2}}},
    "train": {"epochs": 1, "batch_size": 8, "lr": 0.02},
    "gradients": {"batch_size": 8},
    "methods": {"tracin": {}, "rrinf": {"sampling": "layer", "iterations": 20}},
}
SCORE_ONLY = {"layer": {"methods": {"rrinf": {"sampling": "layer"}}},
              "mb4": {"methods": {"rrinf": {"sampling": "minibatch", "batch_size": 4}}}}


def _snakemake(tmp_path, cfg, *args):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({**cfg, "results_dir": str(tmp_path / "results")}))
    return snakemake("--cores", "2", "grid", "--configfile", str(tmp_path / "cfg.yaml"), *args, workdir=tmp_path)


def _job_counts(stdout: str) -> dict:
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stdout, re.M)}


def test_builtin_grids_are_valid():
    needs_diffusers()
    for name, settings in GRIDS.items():
        configs = setting_configs(validate_config(profile(f"{name}.yaml"), planning_only=True), validate_config)
        assert list(configs) == list(settings)
    assert configs["mb2048"]["methods"]["rrinf"]["batch_size"] == 2048
    assert list(GRIDS["ablation-rank"]) == ["r2", "r8", "r12", "r24"]


def test_dag_shares_upstream_per_replicate(tmp_path):
    """Two score-only settings rescore rrinf alone on the run's gradients; the LoRA-rank setting fine-tunes
    its own adapter; all per replicate seed."""
    settings = {**SCORE_ONLY, "r2": {"model": {"lora": {"r": 2, "alpha": 4}}}}
    cfg = {**TINY, "seeds": [1, 2], "grid": {"name": "g", "method": "rrinf", "settings": settings}}
    proc = _snakemake(tmp_path, cfg, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = _job_counts(proc.stdout)
    # per rep: one base finetune and gradients (train, test); r2 its own; layer = the run's rrinf (no job)
    assert {k: jobs.get(k, 0) for k in ("prepare_data", "finetune", "gradients", "grid_prepare_data",
                                        "grid_finetune", "grid_gradients", "grid_scores", "scores")} == {
        "prepare_data": 2, "finetune": 2, "gradients": 4, "grid_prepare_data": 0, "grid_finetune": 2,
        "grid_gradients": 4, "grid_scores": 2 * (1 + 2), "scores": 2 * 2}
    assert jobs["grid_table"] == 1


@pytest.mark.parametrize("grid, message", [
    ("no-such-grid", "config key 'grid': unknown grid 'no-such-grid'"),
    ({"name": "g", "settings": {"a": {"run": "x"}}}, "config key 'grid.settings.a.run': a setting may change only"),
    ({"name": "g", "settings": {"a": {"methods": {"rrinf": {"sampling": "minibatch", "batch_size": 0}}}}},
     "grid setting 'a': config key 'methods.rrinf'"),
    ({"name": "g", "settings": {"a": {"model": {"lora": {"rank": 2}}}}},
     "grid setting 'a': config key 'model.lora.rank': unknown key"),
])
def test_bad_grid_is_one_input_error(grid, message):
    with pytest.raises(InputError, match=re.escape(message)):
        validate_config({**TINY, "grid": grid}, planning_only=True)


def test_bad_grid_stops_snakemake_with_one_line(tmp_path):
    proc = _snakemake(tmp_path, {**TINY, "grid": {"name": "g", "settings": {"a": {"seed": 3}}}}, "-n")
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.startswith("inflbench:")]
    assert lines == ["inflbench: invalid input: config key 'grid.settings.a.seed': a setting may change only "
                     "data, model, train, gradients, scores, methods, evaluate"]


def test_grid_table_layout_and_seed_mean(tmp_path):
    rows = [{"setting": s, "task": "digits", "method": m, "auc": "x", "recall": "y", "seconds": 1.0, "auc_mean": a,
             "auc_std": 0.1, "recall_mean": a - 0.2, "recall_std": 0.05, "model": "tiny:unet"}
            for s, a in (("mb1", 0.6), ("mb64", 0.634)) for m in ("tracin", "rrinf")]
    table = grid_table(pd.DataFrame(rows), "rrinf")
    assert list(table["setting"]) == ["mb1", "mb64"] and list(table.columns[:5]) == ["task", "setting", "auc",
                                                                                       "recall", "seconds"]
    assert table["auc_mean"].tolist() == [0.6, 0.634]
    grid_figure(table, "rrinf", "t", tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 1000
    # replicate seeds: mean ± std over seeds of the per-seed means
    reps = pd.DataFrame([{**r, "rep": rep, "auc_mean": r["auc_mean"] + d, "seconds": 1.0 + d}
                         for rep, d in ((1, 0.0), (2, 0.1)) for r in rows])
    table = grid_table(reps, "rrinf")
    assert table["auc_mean"].tolist() == pytest.approx([0.65, 0.684]) and table["seeds"].tolist() == [2, 2]
    assert table["auc_std"].tolist() == pytest.approx([0.1 / 2**0.5] * 2)
    assert table["auc"][0] == "65.0% ± 7.1%" and table["seconds"].tolist() == pytest.approx([1.05, 1.05])


@pytest.mark.slow
def test_tiny_grid_end_to_end(tmp_path):
    proc = _snakemake(tmp_path, {**TINY, "grid": {"name": "g", "method": "rrinf", "settings": SCORE_ONLY}})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "results" / "g"
    stacked = pd.read_csv(run / "tables" / "grid_g.csv")
    assert sorted(zip(stacked["setting"], stacked["method"])) == [("layer", "rrinf"), ("layer", "tracin"),
                                                                  ("mb4", "rrinf"), ("mb4", "tracin")]
    paper = pd.read_csv(run / "tables" / "grid_g_rrinf.csv")
    assert list(paper["setting"]) == ["layer", "mb4"] and paper["auc_mean"].between(0, 1).all()
    # the layer setting is the run's own rrinf: same summary; mb4 was rescored in its setting folder
    base = pd.read_json(run / "math_reasoning" / "metrics" / "identification_summary_rrinf.json", typ="series")
    assert paper["auc_mean"][0] == pytest.approx(base["auc_mean"])
    assert (run / "grids" / "g" / "mb4" / "math_reasoning" / "scores" / "rrinf.safetensors").is_file()
    assert not (run / "grids" / "g" / "layer").exists() and not (run / "grids" / "g" / "mb4" / "math_reasoning" / "model").exists()
    assert (run / "figures" / "grid_g_rrinf.png").stat().st_size > 1000
