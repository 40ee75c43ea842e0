"""Layer-study metrics that need no retraining (layer-choice paper §5.4, App. A stage 4): the noise decile
histogram and the cancellation effect C(W) of Yeh et al. (2022). NDR curve, NDR@p and NDR-AUC are the shared
curves of :mod:`inflbench.metrics` (``ndr_curve``, ``ndr_at``, ``ndr_auc``).

Mapping to the layer-choice paper: its NDR counts mislabeled samples among the p% *lowest-ranked* ("least influential")
training samples. With our sign (positive = harmful) those are the p% samples with the **highest**
aggregate score, so every function below ranks by descending score (ties broken by sample order).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from inflbench.metrics import harm_order


def noise_histogram(scores: np.ndarray, flipped: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Flipped samples per influence decile (decile 1 = the most harmful 10%), layer-choice paper Fig. 19."""
    flipped = np.asarray(flipped, bool)
    order = harm_order(scores)
    edges = np.round(np.linspace(0, len(order), bins + 1)).astype(int)
    rows = []
    for i in range(bins):
        part = flipped[order[edges[i]:edges[i + 1]]]
        rows.append({"decile": i + 1, "n_samples": len(part), "n_flipped": int(part.sum()),
                     "share_of_flipped": float(part.sum() / max(int(flipped.sum()), 1))})
    return pd.DataFrame(rows)


def cancellation(grads: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Per-parameter cancellation C = sum_i |g_i| / |sum_i g_i| over training samples i (axis 0).

    ``grads`` is ``(n_train, ...)``. A parameter whose summed gradient is exactly zero (within ``eps``)
    while some gradient is non-zero has C = inf; a parameter with only zero gradients has C = nan.
    """
    g = np.asarray(grads, np.float64).reshape(len(grads), -1)
    return cancellation_from_sums(np.abs(g).sum(0), g.sum(0), eps)


def cancellation_from_sums(abs_sum: np.ndarray, total: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """:func:`cancellation` from the running sums ``sum_i |g_i|`` and ``sum_i g_i`` (streamed stores)."""
    num, den = np.asarray(abs_sum, np.float64), np.abs(np.asarray(total, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        c = num / den
    c[(den <= eps) & (num > 0)] = np.inf
    c[num == 0] = np.nan
    return c


def layer_cancellation(grads: np.ndarray) -> float:
    """Layer-level C(W) = sum_i ||g_i|| / ||sum_i g_i|| (Yeh et al. 2022, Eq. 7 of the layer-choice paper), L2 norms."""
    g = np.asarray(grads, np.float64).reshape(len(grads), -1)
    return layer_cancellation_from(np.linalg.norm(g, axis=1), float(np.linalg.norm(g.sum(0))))


def layer_cancellation_from(sample_norms: np.ndarray, sum_norm: float) -> float:
    """:func:`layer_cancellation` from the per-sample norms ``||g_i||`` and ``||sum_i g_i||``."""
    num = float(np.sum(sample_norms))
    return float(num / sum_norm) if sum_norm > 0 else (float("inf") if num > 0 else float("nan"))


def cancellation_summary(c: np.ndarray, extreme: float = 1e3) -> dict:
    """Median, mean (finite values), min, max and the shares of infinite and extreme (> ``extreme``) values."""
    c = np.asarray(c, float)
    valid = c[~np.isnan(c)]
    finite = valid[np.isfinite(valid)]
    n = max(len(valid), 1)
    return {"n_params": int(c.size), "median": float(np.median(valid)) if len(valid) else float("nan"),
            "mean": float(finite.mean()) if len(finite) else float("nan"),
            "min": float(valid.min()) if len(valid) else float("nan"),
            "max": float(valid.max()) if len(valid) else float("nan"),
            "share_inf": float(np.isinf(valid).sum() / n),
            "share_extreme": float((valid > extreme).sum() / n)}
