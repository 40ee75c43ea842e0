"""Closed-form and direct solves: float64 Cholesky reference, DataInf's Sherman-Morrison approximation."""

from __future__ import annotations

import torch
from torch import Tensor

from inflbench.solvers.common import sym_gram


#: Below this size the recursive Cholesky hands over to LAPACK.
CHOL_LEAF = 256

#: Up to this many right-hand sides two triangular solves beat ``torch.cholesky_solve`` (measured).
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


def cholesky_solve(M: Tensor, R: Tensor) -> Tensor:
    """``M^{-1} R`` (R: ``(..., s, k)``) in ``M``'s dtype by Cholesky (LU when ``M`` is not positive definite)."""
    L, ok = cholesky(M)
    if not ok:
        return lu_solve(M, R)
    if R.shape[-1] <= FEW_RHS:
        Y = torch.linalg.solve_triangular(L, R, upper=False)
        return torch.linalg.solve_triangular(L.mT, Y, upper=True)
    return torch.cholesky_solve(R, L)


def datainf_apply(S: Tensor, v: Tensor, damping: float | Tensor) -> Tensor:
    """DataInf's closed form for ``(1/N sum_i s_i s_i^T + lambda I)^{-1} v``.

    Kwon et al. swap the average and the inverse and use Sherman–Morrison:
    ``(1/N) sum_i (s_i s_i^T + lambda I)^{-1} v
    = (1/(N lambda)) sum_i (v - s_i (s_i^T v) / (lambda + ||s_i||^2))``.
    Exact when ``N == 1``. S: ``(..., N, d)``; v: ``(..., d)`` or ``(..., d, k)``.
    """
    vec = v.dim() == S.dim() - 1
    V = v.unsqueeze(-1) if vec else v
    lam = torch.as_tensor(damping, dtype=S.dtype, device=S.device)
    if lam.dim() > 0:
        lam = lam.reshape(lam.shape + (1, 1))
    N = S.shape[-2]
    sq = (S * S).sum(-1, keepdim=True)  # (..., N, 1)
    coef = (S @ V) / (lam + sq)  # (..., N, k)
    out = (V - S.transpose(-1, -2) @ coef / N) / lam
    return out.squeeze(-1) if vec else out


def direct_solve(M: Tensor, v: Tensor) -> Tensor:
    """Reference solve of ``M x = v`` in float64 (Cholesky; LU fallback if not PD).

    M: ``(..., d, d)``; v: ``(..., d)`` or ``(..., d, k)``. Returns float64.
    """
    M64 = M.to(torch.float64)
    v64 = v.to(torch.float64)
    vec = v64.dim() == M64.dim() - 1
    V = v64.unsqueeze(-1) if vec else v64
    L, info = torch.linalg.cholesky_ex(M64)
    if bool((info == 0).all()):
        X = torch.cholesky_solve(V, L)
    else:
        X = torch.linalg.solve(M64, V)
    return X.squeeze(-1) if vec else X
