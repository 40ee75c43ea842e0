"""Mislabeled-data detection metrics on per-training-sample scores (higher = more harmful)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def detection_curve(scores: np.ndarray, flipped: np.ndarray, points: int = 51) -> pd.DataFrame:
    """Fraction of flipped samples found when inspecting the top ``fraction`` of samples by score.

    Ties are broken by sample order (stable sort), so the curve is deterministic.
    """
    scores, flipped = np.asarray(scores, float), np.asarray(flipped, bool)
    if scores.shape != flipped.shape:
        raise ValueError(f"scores {scores.shape} and flip mask {flipped.shape} differ in shape")
    order = np.argsort(-scores, kind="stable")
    found = np.concatenate([[0], np.cumsum(flipped[order])])
    fractions = np.linspace(0, 1, points)
    inspected = np.round(fractions * len(scores)).astype(int)
    total = max(int(flipped.sum()), 1)
    return pd.DataFrame({"fraction_inspected": fractions, "n_inspected": inspected,
                         "fraction_detected": found[inspected] / total})


def detection_auc(scores: np.ndarray, flipped: np.ndarray) -> float:
    """ROC AUC of score vs flip mask (0.5 = chance); NaN when only one class is present."""
    flipped = np.asarray(flipped, bool)
    if flipped.all() or not flipped.any():
        return float("nan")
    return float(roc_auc_score(flipped, np.asarray(scores, float)))


def detection_rate_at(scores: np.ndarray, flipped: np.ndarray, fraction: float) -> float:
    """Share of flipped samples among the top ``fraction`` most harmful (precision at that cut)."""
    k = max(int(round(fraction * len(scores))), 1)
    top = np.argsort(-np.asarray(scores, float), kind="stable")[:k]
    return float(np.asarray(flipped, bool)[top].mean())
