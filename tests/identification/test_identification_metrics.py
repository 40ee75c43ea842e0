"""Class-detection AUC / recall against hand-computed values; the Table-2 layout."""

import math

import numpy as np
import pandas as pd
import pytest

from inflbench.metrics import roc_auc
from inflbench.studies.identification.metrics import class_detection, pct, summarise
from inflbench.studies.identification.stages import identification_table


def test_hand_computed_example():
    # 5 training samples, classes a a b b b; two test points (class a, class b). Positive = harmful.
    influence = np.array([[-3.0, 1.0],
                          [0.5, 2.0],
                          [-1.0, -2.0],
                          [2.0, 0.0],
                          [0.0, -1.0]])
    points = class_detection(influence, ["a", "a", "b", "b", "b"], ["a", "b"])
    # test 0 (class a): -influence = 3, -0.5 | 1, -2, 0. Positive pairs (pos > neg): 3 beats all 3;
    # -0.5 beats -2 only -> 4 of 6. Most helpful s=2: samples 0 (-3) and 2 (-1) -> one of two is class a.
    assert points.loc[0, "auc"] == pytest.approx(4 / 6)
    assert points.loc[0, "recall"] == pytest.approx(1 / 2)
    assert points.loc[0, "s"] == 2
    # test 1 (class b): -influence = -1, -2 | 2, 0, 1 -> every b beats every a: AUC 1; s=3 most helpful
    # are samples 2 (-2), 4 (-1), 3 (0) -> all b.
    assert points.loc[1, "auc"] == 1.0 and points.loc[1, "recall"] == 1.0 and points.loc[1, "s"] == 3
    summary = summarise(points)
    assert summary["auc_mean"] == pytest.approx((4 / 6 + 1) / 2)
    assert summary["auc_std"] == pytest.approx(np.std([4 / 6, 1.0]))  # ddof=0
    assert summary["recall_mean"] == pytest.approx(0.75) and summary["n_test_scored"] == 2


def test_ties_count_one_half_and_break_by_order():
    influence = np.zeros((4, 1))
    points = class_detection(influence, [0, 0, 1, 1], [0])
    assert points.loc[0, "auc"] == 0.5
    assert points.loc[0, "recall"] == 1.0  # stable order: the first s=2 samples are the class-0 ones


def test_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        y = rng.random(25) < 0.3
        y[:2] = [True, False]
        s = rng.integers(0, 6, 25).astype(float)
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_missing_class_and_bad_shapes():
    points = class_detection(np.ones((3, 1)), [0, 0, 0], [1])
    assert math.isnan(points.loc[0, "auc"]) and points.loc[0, "s"] == 0
    assert summarise(points)["n_test_scored"] == 0
    with pytest.raises(ValueError, match="training"):
        class_detection(np.ones((3, 2)), [0, 1], [0, 1])
    with pytest.raises(ValueError, match="non-finite"):
        class_detection(np.array([[np.nan], [0.0]]), [0, 1], [0])


def test_table_layout_keeps_method_order():
    rows = [{"task": "t", "method": m, "model": "x", "auc_mean": a, "auc_std": 0.1, "recall_mean": 0.4,
             "recall_std": 0.05, "seconds": 1.0} for m, a in (("tracin", 0.6), ("datainf", 0.657), ("rrinf", 0.7))]
    table = identification_table(rows)
    assert list(table["method"]) == ["tracin", "datainf", "rrinf"]
    assert list(table.columns[:6]) == ["task", "model", "method", "auc", "recall", "seconds"]
    assert table.loc[1, "auc"] == "65.7% ± 10.0%"
    assert pct(math.nan, 0.1) == "n/a"
    assert isinstance(table, pd.DataFrame)
