"""Aggregating per-block influence columns into one harmfulness score per training sample (layer-choice paper §3.3).

Sign convention: a positive influence score means *harmful* (removing the sample lowers the validation
loss). Every aggregate returned here is oriented the same way: the **highest** aggregate is the **most
harmful** sample. Seed 003 uses the opposite sign ("least influential" = detrimental), so its
"lowest-ranked" samples are our highest-scored ones; Rank and Vote below are Eqs. 9-10 of the layer-choice paper
rewritten for our sign.

The columns of an aggregation are (block in the group) x (validation sample): ``stack_columns`` builds the
``(n_train, n_blocks * n_val)`` matrix; ensembles over methods and groups simply concatenate columns.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

import numpy as np

AGGREGATIONS = ("mean", "rank", "vote")


def match_blocks(patterns: Iterable[str], blocks: Iterable[str]) -> list[str]:
    """Blocks whose name matches any of the regexes (``re.search``), in the given block order."""
    compiled = [re.compile(p) for p in patterns]
    return [b for b in blocks if b != "total" and any(c.search(b) for c in compiled)]


def stack_columns(scores: Mapping[str, np.ndarray], blocks: Iterable[str],
                  val_mask: np.ndarray | None = None) -> np.ndarray:
    """``(n_train, n_blocks * n_kept_val)`` matrix of the chosen blocks' columns (``val_mask`` keeps columns)."""
    mats = []
    for b in blocks:
        m = np.asarray(scores[b], dtype=np.float64)
        mats.append(m if val_mask is None else m[:, np.asarray(val_mask, bool)])
    if not mats:
        raise ValueError("no blocks to aggregate")
    out = np.concatenate(mats, axis=1)
    if out.shape[1] == 0:
        raise ValueError("no validation column left to aggregate (no correctly predicted validation sample?)")
    return out


def mean_aggregate(columns: np.ndarray) -> np.ndarray:
    """Mean over columns (Eq. 2 of the layer-choice paper up to a constant)."""
    return np.asarray(columns, float).mean(axis=1)


def rank_aggregate(columns: np.ndarray) -> np.ndarray:
    """Average over columns of each sample's rank within the column (1 = least harmful, ties averaged)."""
    from scipy.stats import rankdata

    return rankdata(np.asarray(columns, float), axis=0, method="average").mean(axis=1)


def vote_aggregate(columns: np.ndarray, k: int) -> np.ndarray:
    """Positional voting: per column the most harmful sample gets ``k`` votes, the next ``k-1`` ... down to 0.

    Position = number of samples strictly more harmful in that column (Eq. 10), so tied samples share the
    better position. Returns the total votes per sample (higher = more harmful).
    """
    from scipy.stats import rankdata

    columns = np.asarray(columns, float)
    if k < 1:
        raise ValueError(f"vote k must be >= 1, got {k}")
    # number of samples with a strictly higher score = n - (max rank of ties)
    above = columns.shape[0] - rankdata(columns, axis=0, method="max")
    return np.maximum(k - above, 0).sum(axis=1).astype(float)


def aggregate(columns: np.ndarray, how: str, vote_k: int | None = None) -> np.ndarray:
    if how == "mean":
        return mean_aggregate(columns)
    if how == "rank":
        return rank_aggregate(columns)
    if how == "vote":
        if vote_k is None:
            raise ValueError("vote needs vote_k")
        return vote_aggregate(columns, vote_k)
    raise ValueError(f"unknown aggregation {how!r}; choose one of {AGGREGATIONS}")


def vote_k_for(n_train: int, fraction: float) -> int:
    """k of positional voting as a fraction of the training-set size (at least 1)."""
    return max(1, int(round(fraction * n_train)))


def group_scores(scores: Mapping[str, np.ndarray], blocks: list[str], how: str, correct: np.ndarray,
                 vote_k: int | None = None) -> np.ndarray:
    """Aggregate one group: ``mean`` over all validation samples, ``rank``/``vote`` over correctly predicted ones."""
    return stacked_scores([(scores, blocks)], how, correct, vote_k)


def stacked_scores(parts: list[tuple[Mapping[str, np.ndarray], list[str]]], how: str, correct: np.ndarray,
                   vote_k: int | None = None) -> np.ndarray:
    """As :func:`group_scores` over the concatenated columns of several (scores, blocks) parts (an ensemble
    of methods x groups; one part = one group)."""
    mask = None if how == "mean" else np.asarray(correct, bool)
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; choose one of {AGGREGATIONS}")
    # every aggregation is a sum over columns of a per-column quantity: accumulated block by block
    total, columns = None, 0
    for sc, bl in parts:
        for b in bl:
            block = stack_columns(sc, [b], mask)
            part = aggregate(block, how, vote_k) * (block.shape[1] if how != "vote" else 1)
            total = part if total is None else total + part
            columns += block.shape[1]
    if total is None:
        raise ValueError("no blocks to aggregate")
    return total / columns if how != "vote" else total
