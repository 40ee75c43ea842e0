"""LiSSA / Neumann recursion for ``(G + damping I)^{-1} v``."""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import Tensor

def lissa_increment_diverged(min_norm: float, norm: float, x_norm: float, eps: float, rel: float = 1e-3) -> bool:
    """Divergence test for the LiSSA recursion.

    The increment ``x_k - x_{k-1} = B^k v`` (``B`` the iteration matrix, symmetric)
    is non-increasing in norm when the recursion converges. Flag when it is
    non-finite or grows above ``(1 + rel)`` times the smallest increment seen,
    ignoring increments at rounding-noise level (``<= 64 eps ||x_k||``).
    """
    if not math.isfinite(norm):
        return True
    if norm <= 64.0 * eps * x_norm:
        return False
    return norm > min_norm * (1.0 + rel)


def lissa_solve(
    matvec: Callable[[Tensor], Tensor] | Tensor,
    v: Tensor,
    *,
    damping: float | Tensor,
    scale: float | Tensor,
    depth: int,
    callback: Callable[[int, Tensor], None] | None = None,
    variant: Literal["correct", "published"] = "correct",
    batch_dims: int = 0,
    iterate_callback: Callable[[int, Tensor], None] | None = None,
) -> tuple[Tensor, bool | Tensor]:
    """LiSSA recursion for ``(G + damping I)^{-1} v`` given ``matvec(x) = G x``.

    ``variant="correct"`` (Agarwal et al. with damping and scaling):
    ``x_0 = v``, ``x_k = v + (I - (G + lambda I)/scale) x_{k-1}``, estimate
    ``x_k / scale``. Converges to ``(G + lambda I)^{-1} v`` whenever
    ``scale > lambda_max(G + lambda I) / 2``; the error after ``k`` steps is
    ``(I - A/scale)^{k+1}`` applied to ``A^{-1} v``.

    ``variant="published"`` reproduces the recursion of the DataInf code base:
    the damping is subtracted instead of added and no scaling is applied,
    ``x_k = v + (I - G + lambda I) x_{k-1}``, estimate ``x_k`` (``scale`` is
    ignored). It targets ``(G - lambda I)^{-1} v`` and diverges once
    ``lambda_max(G) - lambda > 2``.

    ``v`` may hold several columns (``(d, k)``); ``matvec`` must accept the
    same shape. With ``batch_dims > 0`` the leading ``batch_dims`` dimensions
    of ``v`` index independent problems (``matvec`` applies each one's
    ``G``), ``damping`` / ``scale`` may be tensors broadcastable against ``v``
    (e.g. ``(B, 1, 1)``) and ``diverged`` is a bool tensor of shape
    ``v.shape[:batch_dims]``. Divergence is flagged when an iterate is
    non-finite or the increment ``x_k - x_{k-1}`` (which is ``B^k v`` with
    ``B`` the iteration matrix, non-increasing in norm for a convergent
    recursion) grows; see :func:`lissa_increment_diverged`.
    ``matvec`` may also be the matrix ``G`` itself (``(d, d)``, or ``(B, d, d)`` with ``batch_dims=1``):
    the product then accumulates into the step (BLAS ``beta = 1``) instead of a separate array.
    callback(k, estimate_k) after each step ``k = 1..depth`` (a new tensor each step).
    iterate_callback(k, x_k): the recursion's iterate itself, with no copy (the estimate is ``x_k / scale``
    for the correct variant, ``x_k`` for the published one), for callers that need only ratios of
    iterates; it is updated in place afterwards, so a callback that keeps it must copy it.
    Returns ``(estimate, diverged)``.
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if variant not in ("correct", "published"):
        raise ValueError(f"variant must be 'correct' or 'published', got {variant!r}")
    lam = torch.as_tensor(damping, dtype=v.dtype)
    if not bool(torch.all(torch.isfinite(lam))) or bool(torch.any(lam < 0)):
        raise ValueError(f"damping must be finite and >= 0, got {damping}")
    sc = torch.as_tensor(scale, dtype=v.dtype)
    if variant == "correct" and (not bool(torch.all(torch.isfinite(sc))) or bool(torch.any(sc <= 0))):
        raise ValueError(f"scale must be positive and finite, got {scale}")
    red = tuple(range(batch_dims, v.dim()))
    bshape = v.shape[:batch_dims]

    def norm(t: Tensor) -> Tensor:
        return torch.linalg.vector_norm(t, dim=red) if red else t.abs()

    eps = torch.finfo(v.dtype).eps
    # x_k = x_{k-1} + g * u_k with u_k = a v + c x_{k-1} - G x_{k-1} (correct: a = scale, c = -damping,
    # g = 1 / scale; published: a = 1, c = damping, g = 1); the product accumulates into u_k
    if variant == "correct":
        av, c, g = v * sc, -lam, 1.0 / sc
    else:
        av, c, g = v, lam, torch.ones((), dtype=v.dtype)
    if isinstance(matvec, Tensor):
        product = Tensor.baddbmm_ if matvec.dim() == 3 else Tensor.addmv_ if v.dim() == 1 else Tensor.addmm_
        accumulate = lambda u, x: product(u, matvec, x, alpha=-1.0)  # noqa: E731
    else:
        accumulate = lambda u, x: u.sub_(matvec(x))  # noqa: E731
    g_each = g.reshape(g.shape[:batch_dims]) if g.dim() > batch_dims else g  # per problem, against norm()
    x = v.clone()
    v_norm = norm(v)
    diverged = ~torch.isfinite(v_norm) if red else ~torch.isfinite(v)
    # x_0 - x_{-1} = v (x_{-1} = 0): a first increment larger than v already shows divergence at depth 1
    min_inc = torch.nan_to_num(v_norm.to(torch.float64), nan=float("inf")).expand(bshape).clone()
    incs = []
    u = torch.empty_like(v)
    for k in range(1, depth + 1):
        torch.addcmul(av, c, x, out=u)
        accumulate(u, x)
        inc = (norm(u) * g_each).to(torch.float64)
        x.addcmul_(u, g)
        incs.append(inc)
        grew = inc > min_inc * (1.0 + 1e-3)
        if bool(grew.any()):  # the rounding floor only matters for an increment that grew
            diverged = diverged | (grew & (inc > 64.0 * eps * norm(x).to(torch.float64)))
        min_inc = torch.fmin(min_inc, inc)
        if iterate_callback is not None:
            iterate_callback(k, x)
        if callback is not None:
            callback(k, x / sc if variant == "correct" else x.clone())
        if not bool(torch.isfinite(inc).any()):
            break
    if incs:
        diverged = diverged | ~torch.isfinite(torch.stack(incs)).all(0)
    result = x / sc if variant == "correct" else x
    diverged = diverged | ~torch.isfinite(norm(result))
    if batch_dims == 0:
        return result, bool(diverged.any())
    return result, diverged
