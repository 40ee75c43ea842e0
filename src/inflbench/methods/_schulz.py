"""Batched Schulz solves shared by ``hyperinf`` and ``hyperinf_fim``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..solvers import cholesky_solve, schulz_apply_tracked, schulz_inverse
from ._stats import ALONE_BYTES, BATCH_BYTES

#: HyperINF's published code adds this absolute constant to the damping.
PUBLISHED_DAMPING_OFFSET = 1e-3


def schulz_step(side: int, dtype: torch.dtype) -> int:
    """Equal-size blocks solved together: a GFIM of at least ``ALONE_BYTES`` alone (its products run at full
    speed unbatched, and no stacked copy of several is made), smaller ones stacked up to ``BATCH_BYTES`` of
    Schulz work (four ``side x side`` matrices per block)."""
    per = side * side * torch.finfo(dtype).bits // 8
    return 1 if per >= ALONE_BYTES else max(1, BATCH_BYTES // (4 * per))


def safe_x0(G: Tensor, lam: Tensor) -> Tensor:
    """``X0 = c0 I`` with ``c0 = 2 / (c + lambda)``, ``c = ||G||_F + lambda >= lambda_max(G + lambda I)``.

    Since ``lambda_min(G + lambda I) >= lambda``, every eigenvalue of
    ``I - c0 A`` lies in ``[-(c - lambda)/(c + lambda), (c - lambda)/(c + lambda)]``,
    so ``||I - A X0||_2 < 1`` is guaranteed. ``||G||_F`` is the same on the
    ``n x n`` and ``d x d`` sides (same non-zero spectrum).
    """
    c = torch.linalg.matrix_norm(G, ord="fro") + lam
    return 2.0 / (c + lam)


def schulz_solve(G: Tensor, lam: Tensor, V: Tensor, *, iterations: int, x0, tol: float | None) -> tuple[Tensor, Tensor, int]:
    """Schulz iterates of ``(G + lam I)^{-1}`` applied to ``V``.

    G: (B, L, L) PSD; lam: (B,); V: (B, L, k). Returns ``(X_N V, residuals, iterations run)``
    with columns ``||I - A X0||_F``, the last tracked residual norm (non-increasing
    unless the iteration diverges) and a bound of the final ``||I - A X_N||_F``.
    Uses the product form when ``V`` is thin, else forms ``X_N``.
    """
    B, L, _ = G.shape
    A = G.clone()
    A.diagonal(dim1=-2, dim2=-1).add_(lam.reshape(B, 1))
    if isinstance(x0, str):
        c0 = safe_x0(G, lam)
    else:
        c0 = torch.full((B,), float(x0), dtype=G.dtype)
    k = V.shape[-1]
    if 2 * k < L:
        W, done, (r0, r_last) = schulz_apply_tracked(A, V, iterations=iterations, x0=c0, tol=tol)
        return W, torch.stack([r0, r_last, r_last**2], -1), done
    X = schulz_inverse(A, iterations=iterations, x0=c0)
    eye = torch.eye(L, dtype=G.dtype)
    r0 = torch.linalg.matrix_norm(eye - c0.reshape(B, 1, 1) * A, ord="fro")
    resid = torch.linalg.matrix_norm(eye - A @ X, ord="fro")
    return X @ V, torch.stack([r0, resid, resid], -1), iterations


def gfim_solve(G: Tensor, lam: Tensor, V: Tensor, solver: str, **schulz) -> tuple[Tensor, Tensor, int]:
    """:func:`schulz_solve`, or with ``solver="direct"`` the inverse it converges to: a float64
    Cholesky solve of ``(G + lam I) W = V`` (residuals reported as 0, no iterations)."""
    if solver != "direct":
        return schulz_solve(G, lam, V, **schulz)
    A = G.to(torch.float64, copy=True)
    A.diagonal(dim1=-2, dim2=-1).add_(lam.to(torch.float64).reshape(-1, 1))
    W = cholesky_solve(A, V.to(torch.float64)).to(G.dtype)
    return W, torch.zeros(G.shape[0], 3, dtype=torch.float64), 0


def meta_from(resids: list[Tensor], names: list[list[str]], done: list[int]) -> dict:
    """Diverged = final residual non-finite or larger than the initial one (cannot happen with a safe X0);
    not converged = the final residual bound still above ``SCHULZ_TOL`` (e.g. a tiny X0 that never moves)."""
    from ._health import SCHULZ_TOL, convergence_meta

    allr = torch.cat([x.reshape(-1, 3).to(torch.float64) for x in resids])
    r0, last, r = allr[:, 0], allr[:, 1], allr[:, 2]
    flat = [k for ks in names for k in ks]
    bad = [k for k, a, b in zip(flat, r0.tolist(), last.tolist()) if not math.isfinite(b) or b > a * (1 + 1e-6) + 1e-12]
    finite = r[torch.isfinite(r)]
    return {
        "schulz_residual_max": float(finite.max()) if finite.numel() else float("nan"),
        "schulz_iterations_run": float(max(done)) if done else 0.0,
        "diverged": bool(bad),
        "diverged_blocks": ",".join(bad),
        **convergence_meta(dict(zip(flat, r.tolist())), SCHULZ_TOL, "final residual",
                           "raise iterations or use x0: safe"),
    }
