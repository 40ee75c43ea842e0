"""Influential-data identification metrics (RRInf §4.2, DataInf §4.2): class-detection AUC and recall.

For every test point j, each training sample i gets the pseudo label ``1[class(i) == class(j)]``.
With influence ``I[i, j]`` (positive = harmful, see :mod:`inflbench.methods`), a good estimate makes
same-class training samples the most *helpful*, i.e. the most negative. Per test point:

* **AUC** -- ROC AUC between ``-I[:, j]`` and the pseudo labels (ties count one half);
* **recall** -- share of same-class samples among the ``s`` training samples with the smallest
  influence, ``s`` = number of training samples of the test point's class (= samples per class for
  balanced tasks; ties broken by training order).

The table reports mean ± std over test points (std with ddof=0) and the method's scoring runtime,
in the layout of RRInf Table 2. Test points whose class has no training sample are left out (NaN).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from inflbench.metrics import roc_auc


def class_detection(influence: np.ndarray, train_classes: Sequence, test_classes: Sequence) -> pd.DataFrame:
    """Per-test-point AUC and recall of ``influence`` (n_train, n_test); one row per test point."""
    influence = np.asarray(influence, dtype=float)
    train_classes, test_classes = np.asarray(train_classes), np.asarray(test_classes)
    n_train, n_test = influence.shape
    if len(train_classes) != n_train or len(test_classes) != n_test:
        raise ValueError(f"influence has shape {influence.shape} but there are {len(train_classes)} training and "
                         f"{len(test_classes)} test classes")
    rows = []
    for j in range(n_test):
        same = train_classes == test_classes[j]
        s = int(same.sum())
        if s == 0 or s == n_train:
            rows.append({"s": s, "auc": math.nan, "recall": math.nan})
            continue
        column = influence[:, j]
        if not np.isfinite(column).all():
            raise ValueError(f"test point {j}: non-finite influence values")
        top = np.argsort(column, kind="stable")[:s]  # the s most helpful (most negative) samples
        rows.append({"s": s, "auc": roc_auc(same, -column), "recall": float(same[top].mean())})
    return pd.DataFrame(rows)


def summarise(points: pd.DataFrame) -> dict:
    """Mean and std (ddof=0) of AUC and recall over the test points that have a defined value."""
    out = {}
    for metric in ("auc", "recall"):
        values = points[metric].dropna().to_numpy(float)
        out[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
        out[f"{metric}_std"] = float(values.std()) if len(values) else math.nan
    out["n_test_scored"] = int(points["auc"].notna().sum())
    return out


def pct(mean: float, std: float) -> str:
    """``65.7% ± 9.1%`` as in RRInf Table 2."""
    if not (math.isfinite(mean) and math.isfinite(std)):
        return "n/a"
    return f"{100 * mean:.1f}% ± {100 * std:.1f}%"
