"""The layer study over replicate seeds: one row per (seed, task, filter configuration), then the shared
seed aggregation (mean / std / 95% CI, paired tests)."""

import numpy as np
import pandas as pd
import pytest
import yaml

from common import ROOT, snakemake
from inflbench.studies.layer_choice.report import replicate_summary, stage_seeds


def _runs(acc_a: tuple[float, float], acc_full: float) -> pd.DataFrame:
    """A replicate's runs table: configuration tracin|all|mean retrained with two seeds, one No-filter run."""
    return pd.DataFrame({"task": "t", "kind": ["filter", "filter", "full"], "seed": [0, 1, 0],
                         "config": ["tracin|all|mean", "tracin|all|mean", "No filter"],
                         "accuracy": [*acc_a, acc_full]})


def _ndr(value: float) -> pd.DataFrame:
    return pd.DataFrame({"task": ["t", "t"], "method": "tracin", "group": "all", "agg": ["mean", "vote"],
                         "ndr": [value, 0.0], "ndr_auc": [value / 2, 0.0]})


def test_replicate_summary_averages_retrain_seeds_and_joins_ndr():
    table = replicate_summary(_runs((0.8, 0.9), 0.7), _ndr(0.6)).set_index("method")
    assert table.loc["tracin|all|mean", "accuracy"] == pytest.approx(0.85)
    assert table.loc["tracin|all|mean", "retrainings"] == 2
    assert table.loc["tracin|all|mean", "ndr"] == pytest.approx(0.6)
    assert table.loc["tracin|all|mean", "ndr_auc"] == pytest.approx(0.3)
    assert np.isnan(table.loc["No filter", "ndr"]) and table.loc["No filter", "accuracy"] == pytest.approx(0.7)
    assert "tracin|all|vote" not in table.index  # NDR rows of configurations that were not retrained stay out


def test_stage_seeds_over_two_replicates(tmp_path):
    paths = {"runs": [], "ndr": []}
    for seed, (acc, full, ndr) in {3: ((0.8, 0.9), 0.7, 0.6), 5: ((0.6, 0.6), 0.7, 0.4)}.items():
        for name, frame in (("runs", _runs(acc, full)), ("ndr", _ndr(ndr))):
            path = tmp_path / f"{name}{seed}.csv"
            frame.to_csv(path, index=False)
            paths[name].append(str(path))
    outs = {k: str(tmp_path / f"{k}.csv") for k in ("per_seed", "aggregate", "paired")}
    outs["figure"] = str(tmp_path / "fig.png")
    stage_seeds(paths, outs, {"seeds": [3, 5], "metrics": ["accuracy", "ndr", "ndr_auc"], "paired_metric": "accuracy"})
    per_seed = pd.read_csv(outs["per_seed"])
    assert sorted(per_seed["seed"]) == [3, 3, 5, 5]
    agg = pd.read_csv(outs["aggregate"]).set_index("method")
    assert agg.loc["tracin|all|mean", "accuracy_mean"] == pytest.approx((0.85 + 0.6) / 2)
    assert agg.loc["tracin|all|mean", "accuracy_std"] == pytest.approx(np.std([0.85, 0.6], ddof=1))
    assert agg.loc["tracin|all|mean", "ndr_mean"] == pytest.approx(0.5)
    assert agg.loc["No filter", "accuracy_std"] == pytest.approx(0.0)
    from inflbench.replicates import markdown

    table = markdown(pd.read_csv(outs["aggregate"]), ["accuracy", "ndr"])
    assert "| t | tracin\\|all\\|mean | 2 | 0.725 ± 0.177" in table  # the configuration's pipes are escaped
    assert "| t | No filter | 2 | 0.700 ± 0.000 [0.700, 0.700] | – |" in table  # no NDR for a baseline
    paired = pd.read_csv(outs["paired"])
    assert paired["mean_diff"].abs().item() == pytest.approx(abs((0.85 + 0.6) / 2 - 0.7))


def test_layer_study_over_seeds_in_the_dag(tmp_path):
    overlay = {"seeds": [0, 1], "synthetic": {"enabled": False},
               "layers": {"enabled": True, "methods": ["tracin"], "aggregations": ["mean"], "retrain_seeds": [0],
                          "baselines": ["random"], "selection_keep": [], "logo_groups": 0}}
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    proc = snakemake("-n", "--configfile", str(ROOT / "configs" / "test.yaml"), str(tmp_path / "overlay.yaml"),
                     workdir=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for seed in (0, 1):
        assert f"results/test/seed{seed}/tables/layers_runs.csv" in proc.stdout
    assert "results/test/tables/layers_seeds_aggregate.csv" in proc.stdout
    assert "results/test/figures/layers_seeds.png" in proc.stdout
    counts = dict(line.split() for line in proc.stdout.split("Job stats:")[1].splitlines()[3:]
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    assert counts["layers_seeds"] == "1" and counts["layers_tables"] == "2"
