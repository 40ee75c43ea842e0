"""Direct float64 solves of the damped Fisher influence, choosing Woodbury (n x n) or d x d."""

from __future__ import annotations

import torch
from torch import Tensor

from ..solvers import cholesky_solve
from ..solvers import sym_gram as gram


def use_woodbury(n: int, d: int, m: int) -> bool:
    """True when the n x n (Woodbury) form is cheaper than the d x d form."""
    cost_nn = n * n * d + 2 * n * m * d + n**3 / 3 + 2 * n * n * m
    cost_dd = n * d * d + d**3 / 3 + 2 * d * d * m + 2 * n * m * d
    return cost_nn <= cost_dd


def exact_scores(tr: Tensor, te: Tensor, lam: Tensor) -> Tensor:
    """``-tr (tr^T tr / n + lam I)^{-1} te^T`` for stacked blocks.

    tr: (B, n, d), te: (B, m, d) float64; lam: (B,) -> (B, n, m) float64.
    """
    B, n, d = tr.shape
    m = te.shape[1]
    lam = lam.to(tr.dtype).reshape(B, 1, 1)
    if use_woodbury(n, d, m):
        K = gram(tr)
        K.diagonal(dim1=-2, dim2=-1).add_((n * lam).reshape(B, 1))
        C = tr @ te.transpose(-1, -2)
        return cholesky_solve(K, C).mul_(-n)
    G = gram(tr.transpose(-1, -2), 1.0 / n)
    G.diagonal(dim1=-2, dim2=-1).add_(lam.reshape(B, 1))
    W = cholesky_solve(G, te.transpose(-1, -2))
    return (tr @ W).neg_()
