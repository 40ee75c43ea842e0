"""Comparing retrained configurations (layer-choice paper §5 protocol): win rates, mean rank, Pareto front, Wilcoxon.

``runs`` is a long table with one row per retraining: ``config`` (e.g. ``tracin|L0-2|vote``), ``task``,
``seed`` and ``accuracy``. Configuration A beats B on a (task, seed) pair when its accuracy is higher there
(the checkpoint is the same within a run); ties count one half.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps


def _wide(runs: pd.DataFrame, value: str = "accuracy") -> pd.DataFrame:
    return runs.pivot_table(index=["task", "seed"], columns="config", values=value, aggfunc="mean")


def win_rate_matrix(runs: pd.DataFrame) -> pd.DataFrame:
    """M[A, B] = share of (task, seed) pairs with both results where A beats B (ties = 1/2); diagonal NaN."""
    wide = _wide(runs)
    configs = list(wide.columns)
    out = pd.DataFrame(np.nan, index=configs, columns=configs)
    for a in configs:
        for b in configs:
            if a == b:
                continue
            both = wide[[a, b]].dropna()
            if len(both):
                out.loc[a, b] = float(((both[a] > both[b]) + 0.5 * (both[a] == both[b])).mean())
    return out


def mean_rank(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (task, seed) rank the configurations by accuracy (1 = best, ties averaged); mean/std over pairs,
    plus the mean win rate against all other configurations."""
    wide = _wide(runs)
    ranks = wide.rank(axis=1, ascending=False, method="average")
    wins = win_rate_matrix(runs)
    frame = pd.DataFrame({"mean_rank": ranks.mean(), "std_rank": ranks.std(ddof=0),
                          "win_rate": wins.mean(axis=1), "mean_accuracy": wide.mean(),
                          "std_accuracy": wide.std(ddof=0), "n_runs": wide.notna().sum()})
    return frame.sort_values(["mean_rank", "win_rate"], ascending=[True, False]).rename_axis("config").reset_index()


def pareto_front(wins: pd.DataFrame, threshold: float = 0.75) -> pd.DataFrame:
    """B dominates A when B beats A in at least ``threshold`` of their comparisons. The front holds the
    configurations that no other configuration dominates; ``dominates`` counts whom each one dominates."""
    dom = (wins >= threshold).fillna(False)
    return pd.DataFrame({"config": wins.index, "dominates": dom.sum(axis=1).to_numpy(),
                         "dominated_by": dom.sum(axis=0).to_numpy(),
                         "pareto": (dom.sum(axis=0) == 0).to_numpy()})


def wilcoxon_against(runs: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Paired two-sided Wilcoxon signed-rank test of every configuration against ``reference``."""
    wide = _wide(runs)
    rows = []
    for config in wide.columns:
        if config == reference or reference not in wide:
            continue
        both = wide[[config, reference]].dropna()
        diff = both[config] - both[reference]
        if len(both) == 0 or np.allclose(diff, 0):
            stat, p = float("nan"), 1.0
        else:
            res = sps.wilcoxon(both[config], both[reference])
            stat, p = float(res.statistic), float(res.pvalue)
        rows.append({"config": config, "reference": reference, "n": len(both), "mean_diff": float(diff.mean()),
                     "statistic": stat, "p_value": p})
    return pd.DataFrame(rows, columns=["config", "reference", "n", "mean_diff", "statistic", "p_value"])


def spearman(x, y) -> tuple[float, float, int]:
    """Spearman rho, p-value and n over the finite pairs (nan where fewer than 3 pairs or a constant input)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan"), float("nan"), int(ok.sum())
    res = sps.spearmanr(x[ok], y[ok])
    return float(res.statistic), float(res.pvalue), int(ok.sum())
