"""The measured tables of docs/results.md from a fake three-seed run (detection tables and score files)."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from common import ROOT
from inflbench.artifacts import save_scores
from inflbench.metrics import recall_at
from inflbench.studies.detection import findings

AUCS = {"exact_block": [0.70, 0.80, 0.75], "tracin": [0.60, 0.62, 0.64], "exact_x1e2": [0.61, 0.66, 0.65],
        "datainf": [0.9, 0.8, 0.85]}


def _fake_run(root, task="SST-2"):
    rng = np.random.default_rng(0)
    for seed in range(3):
        base = rng.normal(size=(12, 3))
        train = {"exact_block": base, "tracin": -base, "exact_x1e2": 3 * base + 1,  # rho 1, -1, 1 with exact_block
                 "datainf": base + rng.normal(size=base.shape)}
        metas = {"exact_block": {"meta.method": "exact_block", "meta.param.damping": "default",
                                 "meta.damping_min": 1e-4, "meta.damping_max": 1e-2},
                 "exact_x1e2": {"meta.method": "exact_block", "meta.param.damping": "default",
                                "meta.param.damping_scale": 100.0, "meta.damping_min": 1e-2, "meta.damping_max": 1.0},
                 "tracin": {"meta.method": "tracin"}, "datainf": {"meta.method": "datainf"}}
        for m, s in train.items():
            path = root / f"seed{seed}" / task / "scores" / f"{m}.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_scores(path, {"a": torch.from_numpy(s)}, metas[m])
        flipped = np.zeros(12, bool)
        flipped[np.argsort(-base.mean(1))[:3]] = True  # the 3 most harmful by exact_block are the flips
        (root / f"seed{seed}" / task / "data").mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"text_a": ["x"] * 12, "label": 0, "flipped": flipped}).to_csv(
            root / f"seed{seed}" / task / "data" / "train.csv", index=False)
        (root / f"seed{seed}" / task / "model").mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"epoch": [1, 2], "val_accuracy": [0.5, 0.8 + seed / 10], "test_accuracy": [0.5, 0.7],
                      "best": [False, True]}).to_csv(root / f"seed{seed}" / task / "model" / "training_curve.csv")
        (root / f"seed{seed}" / "tables").mkdir(parents=True, exist_ok=True)
        # the detection stage's recall of the flips in the top 20 / 40 % of the per-sample scores (mean over targets)
        pd.DataFrame([{"task": task, "method": m, "auc": a[seed], "seconds": 1.0 + seed,
                       "detection_at_20pct": recall_at(train[m].mean(1), flipped, 0.2),
                       "detection_at_40pct": recall_at(train[m].mean(1), flipped, 0.4)} for m, a in AUCS.items()]
                     ).to_csv(root / f"seed{seed}" / "tables" / "detection.csv", index=False)


def test_seed_rows_and_tables(tmp_path):
    _fake_run(tmp_path / "run")
    rows = findings.seed_rows(tmp_path / "run")
    assert len(rows) == 12 and sorted(rows["seed"].unique()) == [0, 1, 2]
    by = rows.groupby("method")
    # per-sample score = mean over targets: monotone transforms keep the rank correlation at +-1
    assert by["rho_exact_block"].mean()["tracin"] == pytest.approx(-1.0)
    assert by["rho_exact_block"].mean()["exact_x1e2"] == pytest.approx(1.0)
    assert by["damping_scale"].first()["exact_x1e2"] == 100.0 and by["damping_scale"].first()["exact_block"] == 1.0
    assert findings.damping_sweep(rows) == {"exact_block": 1.0, "exact_x1e2": 100.0}
    # recall of the 3 flips among the top 2 (20 % of 12) and top 5 (40 %): exact_block finds 2 and 3, tracin none
    assert by["recall_at_20pct"].mean()["exact_block"] == pytest.approx(2 / 3)
    assert by["recall_at_40pct"].mean()["exact_block"] == 1.0 and by["recall_at_40pct"].mean()["tracin"] == 0.0

    blocks = findings.blocks_for("glue", tmp_path / "run", rows)
    assert sorted(blocks) == ["glue-SST-2", "glue-damping-SST-2"]
    table = blocks["glue-SST-2"].splitlines()
    assert "validation accuracy 90.0 ± 10.0 %, test accuracy 70.0 ± 0.0 %" in table[0]
    table = table[2:]
    assert [line.split(" | ")[0] for line in table[2:]] == ["| `datainf`", "| `exact_block`", "| `tracin`"]  # sweep apart
    auc = np.array(AUCS["exact_block"])
    half = stats.t.ppf(0.975, 2) * auc.std(ddof=1) / np.sqrt(3)
    assert f"0.750 ± 0.050 [{0.75 - half:.3f}, {0.75 + half:.3f}] | 66.7 ± 0.0 | 100.0 ± 0.0 |" in table[3]
    # papers' numbers beside ours: RRInf T1 DataInf SST-2 83.62 lies in our CI (0.85 +- 0.124), TracIn 45.6 below
    assert "83.6 ± 8.2 (in CI)" in table[2] and "45.6 ± 5.6 (below)" in table[4]
    sweep = blocks["glue-damping-SST-2"].splitlines()
    assert [line.split(" | ")[1] for line in sweep[2:]] == ["`exact_block`", "`exact_x1e2`", "`tracin`"]
    assert sweep[-1].startswith("| ∞ (TracIn)") and "1.00e-02 – 1.00e+00" in sweep[3]


def test_fill_blocks_and_cli(tmp_path):
    doc = "a\n<!-- BEGIN x-t -->\nold\n<!-- END x-t -->\nb\n"
    assert findings.fill(doc, {"x-t": "new\n"}) == "a\n<!-- BEGIN x-t -->\nnew\n<!-- END x-t -->\nb\n"
    with pytest.raises(ValueError, match="BEGIN y"):
        findings.fill(doc, {"y": "z"})
    _fake_run(tmp_path / "run", task="MRPC")
    (tmp_path / "doc.md").write_text("<!-- BEGIN d-MRPC -->\n<!-- END d-MRPC -->\n"
                                     "<!-- BEGIN d-damping-MRPC -->\n<!-- END d-damping-MRPC -->\n")
    findings.main([str(tmp_path / "doc.md"), f"d={tmp_path / 'run'}", "--csv", str(tmp_path / "rows.csv")])
    text = (tmp_path / "doc.md").read_text()
    assert "| `datainf` | 3 | 0.850 ± 0.050" in text and "70.0 ± 2.6" in text
    assert len(pd.read_csv(tmp_path / "rows.csv")) == 12
    table = tmp_path / "run" / "seed1" / "tables" / "detection.csv"
    pd.read_csv(table).drop(columns="detection_at_40pct").to_csv(table, index=False)
    with pytest.raises(SystemExit, match="seed1/tables/detection.csv: no column detection_at_40pct"):
        findings.main([str(tmp_path / "doc.md"), f"d={tmp_path / 'run'}"])


def test_results_doc_has_every_block():
    text = (ROOT / "docs" / "results.md").read_text()
    for name in ("default-generated", "default-damping-generated", "glue-SST-2", "glue-MRPC"):
        assert f"<!-- BEGIN {name} -->" in text and f"<!-- END {name} -->" in text
