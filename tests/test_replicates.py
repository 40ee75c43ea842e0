"""Named method variants (`methods:` entries that name their method) and replicate seeds (`seeds:`)."""

import copy
import math
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats

from common import ROOT, snakemake
from inflbench.artifacts import read_scores
from inflbench.config import run_seeds, validate_config
from inflbench.errors import InputError
from inflbench.methods import compute_influence, method_entry
from inflbench.paths import Layout
from inflbench.replicates import aggregate, markdown, paired_tests, stage_seeds_tables, t_interval
from inflbench.stages import stage_scores

DEFAULT = yaml.safe_load((ROOT / "config.yaml").read_text())
PAPER_RRINF = {"method": "rrinf", "variant": "published", "sampling": "neuron", "iterations": 1000, "lr": 0.01}


def _methods(methods: dict) -> dict:
    cfg = copy.deepcopy(DEFAULT)
    cfg["methods"] = methods
    cfg["layers"]["methods"] = []  # all of them
    return cfg


def test_variant_entry_is_valid_and_resolves():
    cfg = validate_config(_methods({"rrinf": {}, "rrinf_paper": PAPER_RRINF}))
    assert list(cfg["methods"]) == ["rrinf", "rrinf_paper"]
    base, params = method_entry("rrinf_paper", cfg["methods"]["rrinf_paper"])
    assert base == "rrinf" and params == {k: v for k, v in PAPER_RRINF.items() if k != "method"}
    assert method_entry("tracin", {}) == ("tracin", {})
    # the replicate seed fills a method's own seed unless the entry sets it; methods without one get none
    assert method_entry("rrinf_paper", PAPER_RRINF, seed=3)[1]["seed"] == 3
    assert method_entry("r", {"method": "rrinf", "seed": 7}, seed=3)[1]["seed"] == 7
    assert "seed" not in method_entry("tracin", {}, seed=3)[1]


@pytest.mark.parametrize("methods,message", [
    ({"rrinf_paper": {"method": "rrinff"}}, r"^config key 'methods\.rrinf_paper\.method': unknown influence method "
                                             r"'rrinff'; valid choices: .*rrinf"),
    ({"my_tracin": {}}, r"^config key 'methods\.my_tracin': unknown influence method 'my_tracin'.*"
                        r"a variant names its method"),
    ({"rrinf_paper": {"method": "rrinf", "lr": 0.0}}, r"^config key 'methods\.rrinf_paper': parameter 'lr'"),
    ({"rrinf_paper": {"method": "rrinf", "bogus": 1}}, r"^config key 'methods\.rrinf_paper': method 'rrinf': unknown "
                                                       r"parameter\(s\) bogus"),
    ({"tracin": {"method": "cosine"}}, r"^config key 'methods\.tracin': the entry is named after method 'tracin'"),
    ({"a/b": {"method": "tracin"}}, r"^config key 'methods\.a/b': entry names may hold only"),
])
def test_bad_variant_is_one_line_naming_the_entry(methods, message):
    with pytest.raises(InputError, match=message) as info:
        validate_config(_methods(methods))
    assert "\n" not in str(info.value)


def test_variant_scores_are_the_base_method_with_its_parameters(tmp_path):
    gen = torch.Generator().manual_seed(0)
    train = {"a": torch.randn(12, 3, 4, generator=gen, dtype=torch.float64),
             "b": torch.randn(12, 5, generator=gen, dtype=torch.float64)}
    test = {k: torch.randn(4, *v.shape[1:], generator=gen, dtype=torch.float64) for k, v in train.items()}
    from inflbench.artifacts import save_gradients

    save_gradients(tmp_path / "train.safetensors", train, list(range(12)), {"split": "train"})
    save_gradients(tmp_path / "val.safetensors", test, list(range(100, 104)), {"split": "val"})
    entry = {"method": "rrinf", "sampling": "neuron", "batch_size": 2, "iterations": 40, "lr": 0.05}
    out = tmp_path / "rrinf_small.safetensors"
    stage_scores({"train": str(tmp_path / "train.safetensors"), "target": str(tmp_path / "val.safetensors")},
                 {"scores": str(out)}, {"method": "rrinf_small", "method_params": entry, "seed": 5})
    arrays, meta = read_scores(out)
    assert meta["method"] == "rrinf" and meta["entry"] == "rrinf_small" and meta["params"]["seed"] == 5
    params = {k: v for k, v in entry.items() if k != "method"}
    expected = compute_influence("rrinf", train, test, seed=5, **params)["total"].numpy()
    np.testing.assert_allclose(arrays["total"], expected, rtol=1e-12)
    other = compute_influence("rrinf", train, test, seed=6, **params)["total"].numpy()
    assert not np.allclose(arrays["total"], other)  # the replicate seed reaches the method


def test_run_seeds_and_replicate_layout():
    assert run_seeds(validate_config(DEFAULT)) == [0]
    assert run_seeds(validate_config({**DEFAULT, "seeds": [3, 1, 2]})) == [3, 1, 2]
    with pytest.raises(InputError, match=r"config key 'seeds'"):
        validate_config({**DEFAULT, "seeds": [1, 1]})
    layout = Layout("res", "run")
    assert layout.replicate(2).split(task="t", split="train") == "res/run/seed2/t/data/train.csv"
    assert layout.replicate("{rep}").scores(task="t", method="m") == "res/run/seed{rep}/t/scores/m.safetensors"


def test_t_interval_and_paired_tests_match_hand_computation():
    values = np.array([0.71, 0.75, 0.80])
    mean, std, low, high = t_interval(values)
    half = 4.302652729911275 * np.std(values, ddof=1) / math.sqrt(3)  # t(0.975, 2 dof)
    assert mean == pytest.approx(0.7533333333) and std == pytest.approx(0.0450924975)
    assert (low, high) == pytest.approx((mean - half, mean + half))
    assert math.isnan(t_interval(np.array([0.5]))[1])
    frame = pd.DataFrame({"seed": [0, 1, 2] * 2, "task": "t", "method": ["a"] * 3 + ["b"] * 3,
                          "auc": [0.71, 0.75, 0.80, 0.60, 0.70, 0.72]})
    agg = aggregate(frame, ["auc"])
    assert list(agg["method"]) == ["a", "b"] and list(agg["n_seeds"]) == [3, 3]
    assert agg["auc_ci_high"].iloc[0] == pytest.approx(high)
    row = paired_tests(frame, "auc").iloc[0]
    diff = np.array([0.11, 0.05, 0.08])
    assert (row["method_a"], row["method_b"], row["n_seeds"]) == ("a", "b", 3)
    assert row["mean_diff"] == pytest.approx(diff.mean()) and row["wins_a"] == 1.0
    assert row["p_paired_t"] == pytest.approx(stats.ttest_1samp(diff, 0).pvalue)
    assert row["p_wilcoxon"] == pytest.approx(0.25)  # exact two-sided p of 3 positive differences


def test_stage_seeds_tables(tmp_path):
    paths = []
    for seed, aucs in ((0, (0.9, 0.6)), (4, (0.8, 0.7))):
        p = tmp_path / f"d{seed}.csv"
        pd.DataFrame({"task": "t", "method": ["x", "y"], "auc": aucs, "seconds": 1.0}).to_csv(p, index=False)
        paths.append(str(p))
    outs = {k: str(tmp_path / f"{k}.csv") for k in ("per_seed", "aggregate", "paired")}
    outs["figure"] = str(tmp_path / "fig.png")
    tables = stage_seeds_tables({"tables": paths}, outs, {"seeds": [0, 4], "metrics": ["auc", "seconds", "gone"],
                                                          "paired_metric": "auc"})
    per_seed = pd.read_csv(outs["per_seed"])
    assert list(per_seed["seed"]) == [0, 0, 4, 4]
    agg = pd.read_csv(outs["aggregate"])
    assert agg.loc[agg["method"] == "x", "auc_mean"].item() == pytest.approx(0.85)
    assert agg.loc[agg["method"] == "y", "auc_std"].item() == pytest.approx(np.std([0.6, 0.7], ddof=1))
    assert tables["paired"]["mean_diff"].item() == pytest.approx(0.2)
    assert (tmp_path / "fig.png").stat().st_size > 1000
    assert "| t | x | 2 | 0.850 ± 0.071 [0.215, 1.485] |" in markdown(agg, ["auc"])  # 12.706 * 0.1 / 2
    from inflbench.jobs import render_html_outputs  # the report's rendering, as the job wrapper writes it

    render_html_outputs({"aggregate": outs["aggregate"], "aggregate_html": str(tmp_path / "aggregate.html")})
    page = (tmp_path / "aggregate.html").read_text()
    assert "<table" in page and "auc_mean" in page and ">0.850<" in page


def _dry_run(tmp_path, overlay: dict) -> subprocess.CompletedProcess:
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    return snakemake("-n", "--configfile", str(ROOT / "configs" / "test.yaml"), str(tmp_path / "overlay.yaml"),
                     workdir=tmp_path, timeout=600)


def test_seed_wildcard_through_the_dag(tmp_path):
    """Every core and detection job runs once per seed under <run>/seed<N>/; one job tabulates over seeds."""
    proc = _dry_run(tmp_path, {"seeds": [0, 1, 2], "synthetic": {"enabled": False},
                               "methods": {"rrinf_paper": PAPER_RRINF}})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    for seed in (0, 1, 2):
        assert f"results/test/seed{seed}/generated/data/train.csv" in out
        assert f"results/test/seed{seed}/generated/scores/rrinf_paper.safetensors" in out
        assert f"results/test/seed{seed}/tables/detection.csv" in out
    assert "results/test/tables/detection_seeds_aggregate.csv" in out
    assert "results/test/tables/detection_seeds_aggregate.html" in out  # rendered in the report
    counts = dict(line.split() for line in out.split("Job stats:")[1].splitlines()[3:]
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    n_methods = len(yaml.safe_load((ROOT / "configs" / "test.yaml").read_text())["methods"]) + 1
    assert counts["prepare_data"] == "3" and counts["finetune"] == "3" and counts["gradients"] == "6"
    scored = sum(int(counts.get(rule, 0)) for rule in ("scores", "scores_merge", "model_scores"))
    assert scored == 3 * n_methods  # sharded methods end in one scores_merge job each
    assert counts["detection_seeds"] == "1"
