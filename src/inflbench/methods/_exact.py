"""Direct float64 solves of the damped Fisher influence, choosing Woodbury (n x n) or d x d."""

from __future__ import annotations

import torch
from torch import Tensor

from ..solvers import sym_gram
from ._stats import chunked_apply, chunked_cross, flat, gram_of, side_of


#: Below this size the recursive Cholesky hands over to LAPACK.
CHOL_LEAF = 256

#: Up to this many right-hand sides two triangular solves beat ``cholesky_solve`` (measured).
FEW_RHS = 16


def cholesky(M: Tensor) -> tuple[Tensor, bool]:
    """Lower Cholesky factor of SPD ``M`` (..., s, s) and whether it succeeded, by recursive 2 x 2
    blocking: the LAPACK factorisation (``potrf``) runs at a few GFLOP/s on this project's CPUs while
    the triangular solve and the symmetric product of the blocked form run near the GEMM rate (2-3x
    faster overall, measured at s = 1024)."""
    s = M.shape[-1]
    if s <= CHOL_LEAF:
        L, info = torch.linalg.cholesky_ex(M)
        return L, bool((info == 0).all())
    h = s // 2
    L11, ok1 = cholesky(M[..., :h, :h])
    L21 = torch.linalg.solve_triangular(L11.mT, M[..., h:, :h], upper=True, left=False)  # M21 L11^-T
    L22, ok2 = cholesky(M[..., h:, h:] - sym_gram(L21))
    L = torch.empty_like(M)
    L[..., :h, h:] = 0
    L[..., :h, :h] = L11
    L[..., h:, :h] = L21
    L[..., h:, h:] = L22
    return L, ok1 and ok2


def lu_solve(M: Tensor, R: Tensor) -> Tensor:
    """``torch.linalg.solve`` one matrix at a time: the batched call hangs in torch 2.13's MKL build once
    the intra-op thread count has been changed in the process (as the small-operation loops do)."""
    if M.dim() == 2:
        return torch.linalg.solve(M, R)
    s, k = M.shape[-1], R.shape[-1]
    flat_M, flat_R = M.reshape(-1, s, s), R.reshape(-1, s, k)
    return torch.stack([torch.linalg.solve(a, b) for a, b in zip(flat_M, flat_R)]).reshape(R.shape)


def _chol_solve(M: Tensor, R: Tensor) -> Tensor:
    L, ok = cholesky(M)
    if not ok:
        return lu_solve(M, R)
    if R.shape[-1] <= FEW_RHS:
        Y = torch.linalg.solve_triangular(L, R, upper=False)
        return torch.linalg.solve_triangular(L.mT, Y, upper=True)
    return torch.cholesky_solve(R, L)


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
    G = gram_of(data, k, side_of(n, d), GRAM_DTYPES[gram_dtype]).to(torch.float64)
    if side_of(n, d) == "n":
        G.diagonal().add_(n * lam)
        return _chol_solve(G, chunked_cross(X, T)).mul_(-n)
    G.div_(n).diagonal().add_(lam)
    W = _chol_solve(G, T.T.to(torch.float64))
    return chunked_apply(X, W).neg_()
