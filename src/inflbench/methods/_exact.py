"""Direct float64 solves of the damped Fisher influence, choosing Woodbury (n x n) or d x d."""

from __future__ import annotations

import torch
from torch import Tensor

from ..solvers import cholesky_solve
from ._stats import chunked_apply, flat, gram_and_cross, gram_of, side_of


def use_woodbury(n: int, d: int, m: int) -> bool:
    """True when the n x n (Woodbury) form is cheaper than the d x d form."""
    cost_nn = n * n * d + 2 * n * m * d + n**3 / 3 + 2 * n * n * m
    cost_dd = n * d * d + d**3 / 3 + 2 * d * d * m + 2 * n * m * d
    return cost_nn <= cost_dd


GRAM_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def block_exact_scores(data, k: str, lam: float, gram_dtype: str = "float64") -> Tensor:
    """``-X (XᵀX/n + lam I)⁻¹ Tᵀ`` for block ``k`` (n x m, float64), on the block's smaller side.

    The Gram comes from the shared statistics when present, else is accumulated in float64 from
    float32 chunks (``gram_dtype="float32"``: one float32 product, then the float64 solve).
    """
    X, T = flat(data.train[k]), flat(data.test[k])
    n, d = X.shape
    if side_of(n, d) == "n":
        G, C = gram_and_cross(data, k, GRAM_DTYPES[gram_dtype], lower=True)
        G = G.to(torch.float64)
        G.diagonal().add_(n * lam)
        return cholesky_solve(G, C, lower_only=True).mul_(-n)
    G = gram_of(data, k, "d", GRAM_DTYPES[gram_dtype]).to(torch.float64)
    G.div_(n).diagonal().add_(lam)
    W = cholesky_solve(G, T.T.to(torch.float64))
    return chunked_apply(X, W).neg_()
