"""Closed-form and direct solves: float64 Cholesky reference, DataInf's Sherman-Morrison approximation."""

from __future__ import annotations

import torch
from torch import Tensor


def cholesky_solve(M: Tensor, R: Tensor) -> Tensor:
    """``M^{-1} R`` in ``M``'s dtype by Cholesky (LU when ``M`` is not positive definite)."""
    L, info = torch.linalg.cholesky_ex(M)
    if bool((info == 0).all()):
        return torch.cholesky_solve(R, L)
    return torch.linalg.solve(M, R)


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
