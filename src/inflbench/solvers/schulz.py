"""Schulz (Newton-Schulz / hyperpower p=2) iteration ``X_{k+1} = X_k (2I - A X_k)`` for ``A^{-1}`` (HyperINF)."""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import Tensor

from inflbench.solvers.common import batch_scalar, eye_like, lambda_max_bound, sym_gram

#: Initial guess ``X0 = 5e-5 * I`` used by the published HyperINF code.
PUBLISHED_HYPERINF_X0 = 5e-5


def schulz_x0_scale(A: Tensor, x0: Literal["safe"] | float | Tensor = "safe") -> Tensor:
    """The scalar ``c0`` with ``X0 = c0 * I`` (per batch element, shape ``A.shape[:-2]``).

    ``"safe"``: ``c0 = 1 / lambda_max_bound(A)`` which guarantees
    ``||I - A X0||_2 < 1`` for SPD ``A``. A float (or tensor) is used as-is
    (the HyperINF paper/code value is ``PUBLISHED_HYPERINF_X0``).
    """
    if isinstance(x0, str):
        if x0 != "safe":
            raise ValueError(f"x0 must be 'safe' or a positive float, got {x0!r}")
        c = lambda_max_bound(A)
        return 1.0 / c
    t = torch.as_tensor(x0, dtype=A.dtype, device=A.device)
    if not bool(torch.all(t > 0)) or not bool(torch.all(torch.isfinite(t))):
        raise ValueError(f"x0 must be positive and finite, got {x0!r}")
    return t.expand(A.shape[:-2]).clone() if t.dim() == 0 else t



def schulz_inverse(
    A: Tensor,
    *,
    iterations: int,
    x0: Literal["safe"] | float | Tensor = "safe",
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Approximate ``A^{-1}`` by the Schulz iteration ``X_{k+1} = X_k (2I - A X_k)``.

    A: ``(..., d, d)`` symmetric positive definite (batched over leading dims).
    x0: ``"safe"`` -> ``X0 = I / c`` with ``c = lambda_max_bound(A)`` so that
    ``||I - A X0||_2 < 1`` (convergence guaranteed, quadratic once the
    residual is small); a float ``c0`` -> ``X0 = c0 I`` (HyperINF paper/code,
    which converges only if ``c0 < 2 / lambda_max(A)``).
    callback(k, X_k) is called after each iteration ``k = 1..iterations``.
    Work happens in ``A.dtype``.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    c0 = schulz_x0_scale(A, x0)
    eye = eye_like(A)
    X = eye * batch_scalar(c0, A)
    two_eye = 2.0 * eye
    for k in range(1, iterations + 1):
        X = X @ (two_eye - A @ X)
        if callback is not None:
            callback(k, X)
    return X


def schulz_apply(
    A: Tensor,
    V: Tensor,
    *,
    iterations: int,
    x0: Literal["safe"] | float | Tensor = "safe",
    tol: float | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
) -> tuple[Tensor, int]:
    """``X_N V`` for the Schulz iterates ``X_k`` of :func:`schulz_inverse`, without forming ``X_N``.

    With ``X0 = c0 I`` every iterate is a polynomial in ``A``, and with
    ``R_k = I - A X_k`` one has ``R_{k+1} = R_k^2`` and ``X_{k+1} = X_k (I + R_k)``, so
    ``X_N V = c0 * prod_{k<N} (I + R_0^{2^k}) V``: one ``d x d`` squaring plus one
    ``d x d`` times ``d x k`` product per iteration instead of two ``d x d`` products.
    In exact arithmetic the result equals ``schulz_inverse(A, ...) @ V``.

    A: ``(..., d, d)`` SPD; V: ``(..., d, k)``. ``tol``: stop early once
    ``||R_k||_F <= tol`` (then ``||X_k - A^{-1}||`` is at most ``tol * ||A^{-1}||``).
    callback(k, X_k V). Returns ``(X_N V, iterations actually run)``.
    """
    W, done, _ = schulz_apply_tracked(A, V, iterations=iterations, x0=x0, tol=tol, callback=callback)
    return W, done


def schulz_apply_tracked(A, V, *, iterations, x0="safe", tol=None, callback=None):
    """:func:`schulz_apply` plus ``(||R_0||_F, ||R_{N-1}||_F)`` per batch element
    (``||R_{N-1}||_F^2`` bounds the final residual ``||I - A X_N||_F``). For SPD ``A``
    and ``rho(R_0) < 1`` the norms are non-increasing; a divergent iteration
    (``rho(R_0) > 1``) shows as a growing or non-finite value."""
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    A = (A + A.transpose(-1, -2)) * 0.5  # exactly symmetric, so R_k^2 = R_k R_k^T
    c0 = batch_scalar(schulz_x0_scale(A, x0), A)
    R = eye_like(A) - c0 * A
    r0 = torch.linalg.matrix_norm(R, ord="fro")
    W = c0 * V
    done = 0
    for k in range(1, iterations + 1):
        W = W + R @ W
        done = k
        if callback is not None:
            callback(k, W)
        if k == iterations:
            break
        R = sym_gram(R)
        if tol is not None and not _surely_above(R, tol):
            if bool(torch.all(torch.linalg.matrix_norm(R, ord="fro") <= tol)):
                # remaining factors (I + R_k) are I up to tol; apply one more to be safe
                W = W + R @ W
                done = k + 1
                if callback is not None:
                    callback(k + 1, W)
                break
    resid = torch.linalg.matrix_norm(R, ord="fro")
    return W, done, (r0, resid)


def _surely_above(R: Tensor, tol: float) -> bool:
    """Whether some batch element of ``R = S S^T`` (``S`` the previous, symmetric residual) has ``||R||_F > tol``
    for certain, read from its trace alone: ``tr(R) = ||S||_F^2`` and, ``S`` being symmetric,
    ``||S^2||_F >= ||S||_F^2 / sqrt(d)`` (Cauchy-Schwarz over its eigenvalues). Spares the full norm pass on
    every step but the last few; the 1 % margin covers the rounding of the trace."""
    lower = R.diagonal(dim1=-2, dim2=-1).sum(-1) / math.sqrt(R.shape[-1])
    return bool(torch.any(lower > 1.01 * tol))
