"""Closed-form and direct solves: float64 Cholesky reference, DataInf's Sherman-Morrison approximation."""

from __future__ import annotations

import torch
from torch import Tensor


def cholesky(M: Tensor) -> tuple[Tensor, bool]:
    """Lower Cholesky factor of SPD ``M`` (..., s, s) and whether it succeeded (LAPACK ``potrf``)."""
    L, info = torch.linalg.cholesky_ex(M)
    return L, bool((info == 0).all())


def lu_solve(M: Tensor, R: Tensor) -> Tensor:
    """``torch.linalg.solve`` one matrix at a time: the batched call hangs in torch 2.13's MKL build once
    the intra-op thread count has been changed in the process (as the small-operation loops do)."""
    if M.dim() == 2:
        return torch.linalg.solve(M, R)
    s, k = M.shape[-1], R.shape[-1]
    flat_M, flat_R = M.reshape(-1, s, s), R.reshape(-1, s, k)
    return torch.stack([torch.linalg.solve(a, b) for a, b in zip(flat_M, flat_R)]).reshape(R.shape)


def cholesky_solve(M: Tensor, R: Tensor, *, lower_only: bool = False) -> Tensor:
    """``M^{-1} R`` (R: ``(..., s, k)``) in ``M``'s dtype by Cholesky (LU when ``M`` is not positive definite).
    ``lower_only``: ``M`` is given by its lower triangle (``potrf`` reads no more; the entries above the
    diagonal may hold anything), mirrored only for the LU fallback."""
    L, ok = cholesky(M)
    if not ok:
        return lu_solve(M.tril() + M.tril(-1).mT if lower_only else M, R)
    # two triangular solves: 1.2-5x faster than torch.cholesky_solve here for 1 to 500 right-hand sides
    Y = torch.linalg.solve_triangular(L, R, upper=False)
    return torch.linalg.solve_triangular(L.mT, Y, upper=True)


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
