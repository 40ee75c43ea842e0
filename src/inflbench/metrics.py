"""Ranking metrics of per-sample scores, one implementation each, shared by every study.

Convention: a higher score means more harmful (``inflbench.methods``). ``harm_order`` sorts by descending
score with ties broken by sample order, so every curve below is deterministic.

* ``found_curve`` / ``detection_curve`` / ``ndr_curve`` -- share of the flipped samples found when inspecting
  the top ``round(p * n)`` samples, on a grid of ``points`` values of p (the detection study and the
  layer-choice study's NDR name the same curve differently);
* ``recall_at`` (NDR@p; HyperINF's detection rate rt(p), a recall), ``precision_at``, ``found_auc`` (NDR-AUC, exact area
  under the step curve);
* ``roc_auc`` -- ROC AUC as the Mann-Whitney statistic with ties counting one half (equal to
  ``sklearn.metrics.roc_auc_score``); ``average_ranks`` behind it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def harm_order(scores: np.ndarray) -> np.ndarray:
    """Sample indices from the most to the least harmful (stable: ties keep sample order)."""
    return np.argsort(-np.asarray(scores, float), kind="stable")


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties sharing their average rank."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    bounds = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((bounds[:-1] + 1 + bounds[1:]) / 2, np.diff(bounds))
    return ranks


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for the boolean ``positive`` labels (Mann-Whitney; ties count one half);
    NaN when only one class is present."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(np.asarray(score, float))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def found_curve(scores: np.ndarray, flipped: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p grid, samples inspected ``round(p * n)``, share of flipped samples among them)."""
    scores, flipped = np.asarray(scores, float), np.asarray(flipped, bool)
    if scores.shape != flipped.shape:
        raise ValueError(f"scores {scores.shape} and flip mask {flipped.shape} differ in shape")
    found = np.concatenate([[0], np.cumsum(flipped[harm_order(scores)])])
    p = np.linspace(0, 1, points)
    inspected = np.round(p * len(scores)).astype(int)
    return p, inspected, found[inspected] / max(int(flipped.sum()), 1)


def detection_curve(scores: np.ndarray, flipped: np.ndarray, points: int = 51) -> pd.DataFrame:
    """:func:`found_curve` with the detection study's column names."""
    p, inspected, found = found_curve(scores, flipped, points)
    return pd.DataFrame({"fraction_inspected": p, "n_inspected": inspected, "fraction_detected": found})


def ndr_curve(scores: np.ndarray, flipped: np.ndarray, points: int = 101) -> pd.DataFrame:
    """:func:`found_curve` with the layer-choice study's column names (NDR(p); NDR(1) = 1)."""
    p, inspected, found = found_curve(scores, flipped, points)
    return pd.DataFrame({"p": p, "n_removed": inspected, "ndr": found})


def recall_at(scores: np.ndarray, flipped: np.ndarray, p: float) -> float:
    """Share of the flipped samples among the ``round(p * n)`` most harmful samples (NDR@p)."""
    flipped = np.asarray(flipped, bool)
    k = int(round(p * len(flipped)))
    return float(flipped[harm_order(scores)[:k]].sum() / max(int(flipped.sum()), 1))


def precision_at(scores: np.ndarray, flipped: np.ndarray, fraction: float) -> float:
    """Share of flipped samples among the top ``fraction`` most harmful (at least one sample)."""
    k = max(int(round(fraction * len(scores))), 1)
    return float(np.asarray(flipped, bool)[harm_order(scores)[:k]].mean())


def found_auc(scores: np.ndarray, flipped: np.ndarray) -> float:
    """Area under the exact found-share step curve over p in [0, 1] (0.5 = random order, 1 = flips first):
    the mean of NDR(i/n), i = 1..n (right Riemann sum, exact for the step curve)."""
    flipped = np.asarray(flipped, bool)
    n, total = len(flipped), max(int(flipped.sum()), 1)
    cum = np.cumsum(flipped[harm_order(scores)]) / total
    return float(cum.mean()) if n else float("nan")


def detection_auc(scores: np.ndarray, flipped: np.ndarray) -> float:
    """ROC AUC of score vs flip mask (0.5 = chance); NaN when only one class is present."""
    return roc_auc(flipped, scores)


# names of the layer-choice paper
ndr_at = recall_at
ndr_auc = found_auc
detection_rate_at = recall_at  # HyperINF Table 2 / Fig. 2: rt(p) <= min(p / noise, 1), a recall
