"""Exact whole-model damped Fisher influence (float64) -- the RRInf estimand, eq. (2).

``score(i, j) = -g_j^T (G + Lambda)^{-1} g_i`` with ``G = (1/n) sum_i g_i g_i^T``
over the concatenation of all blocks and ``Lambda = lambda I`` (default
``lambda = 0.1 mean_i ||g_i||^2 / d`` on the whole model; a per-block mapping
gives a block-diagonal ``Lambda``). Couples blocks: returns ``{"total": ...}``.

Woodbury form (``n <= d``): with ``K = sum_b X_b X_b^T / lambda_b`` and
``C = sum_b X_b T_b^T / lambda_b``, ``scores = -n (n I + K)^{-1} C``; the
blocks are accumulated one at a time, never concatenated; from a lazy store
(scoring) each block is read once, when its turn comes. Peak (bytes): ``K`` and
its Cholesky factor ``16 n^2``, ``C`` and the result ``16 n m``, one train and
one test block ``4 (n + m) d_max`` plus the float64 chunks of the products
(64 MB). When the whole model is smaller than ``n`` the ``d x d`` form is used
on the (then small, at most ``n^2`` values) concatenation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from ._common import GradData, damping_meta, joint_damping
from ._exact import GRAM_DTYPES, use_woodbury
from ..solvers import cholesky_solve
from ._registry import InfluenceResult, register
from ._stats import gram_and_cross
from .exact_block import ExactBlockParams


@dataclass(frozen=True)
class ExactJointParams(ExactBlockParams):
    pass


@register(
    "exact_joint",
    params=ExactJointParams,
    couples_blocks=True,
    block_stats=True,
    summary="Exact whole-model damped Fisher influence (float64), the RRInf estimand",
)
def exact_joint(data: GradData, p: ExactJointParams) -> InfluenceResult:
    lam = joint_damping(p.damping, data)
    n, m, d = data.n, data.m, data.d_total
    out = InfluenceResult(meta=damping_meta(lam))
    lam_of = (lambda k: lam[k]) if isinstance(lam, Mapping) else (lambda k: lam)
    if not use_woodbury(n, d, m):
        # small model: concatenate (n * d <= n^2 elements) and solve in d x d with diagonal damping
        tr = torch.cat([data.train[k].reshape(n, -1).to(torch.float64) for k in data.names], 1)
        te = torch.cat([data.test[k].reshape(m, -1).to(torch.float64) for k in data.names], 1)
        diag = torch.cat([torch.full((data.dim(k),), lam_of(k), dtype=torch.float64) for k in data.names])
        G = tr.T @ tr / n + torch.diag(diag)
        out["total"] = -(tr @ cholesky_solve(G, te.T))
        return out
    K = torch.zeros(n, n, dtype=torch.float64)
    C = torch.zeros(n, m, dtype=torch.float64)
    for k in data.names:  # one block at a time, float64 accumulated from chunks (K: its lower triangle)
        gram_and_cross(data, k, GRAM_DTYPES[p.gram_dtype], copy=False, into=(K, C), alpha=1.0 / lam_of(k))
    K.diagonal().add_(n)
    out["total"] = cholesky_solve(K, C, lower_only=True).mul_(-n)
    return out
