"""Convergence flags of the iterative methods and the float32 range guard, shared by every method.

Every iterative method writes ``meta["converged"]`` (bool) and ``meta["convergence"]`` (empty, or one
line saying which blocks did not converge and by how much); the workflow carries both into the tables.
All measures are relative, so they mean the same at every gradient scale.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor

from inflbench.solvers.common import col_sq_norms, read_twice, thin_shares

#: LiSSA: remaining relative error (extrapolated from the last two steps) above which it has not converged.
LISSA_TOL = 1e-2
#: Schulz: final ||I - A X||_F above which the inverse is not converged.
SCHULZ_TOL = 1e-2
#: RRInf: relative residual of the ridge normal equations (published variant: of its row-reweighted
#: fixed point) above which SGD has not converged.
RIDGE_TOL = 0.1
#: float32 holds squared gradient norms (and Gram entries) safely only within this range.
FLOAT32_SAFE = (1e-24, 1e24)


def convergence_meta(values: Mapping[str, float], tol: float, measure: str, hint: str) -> dict:
    """``converged`` / ``convergence`` from a per-block measure (non-finite counts as not converged)."""
    bad = {k: v for k, v in values.items() if not (math.isfinite(v) and v <= tol)}
    worst = max(values.values(), key=lambda v: v if math.isfinite(v) else math.inf) if values else 0.0
    out = {"converged": not bad, "convergence": "", f"{measure.replace(' ', '_')}_max": float(worst)}
    if bad:
        names = ", ".join(list(bad)[:3]) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else "")
        out["convergence"] = (f"not converged: {measure} {float(worst):.3g} > {tol:g} in {len(bad)} of "
                              f"{len(values)} block(s) ({names}); {hint}")
    return out


class LastChange:
    """LiSSA callback: remaining relative error of the estimate, extrapolated from its last two steps.

    The increments ``delta_k = e_k - e_{k-1}`` of the recursion are ``B^k v`` (``B`` symmetric), so
    with ``q = ||delta_d|| / ||delta_{d-1}||`` (a lower estimate of the contraction rate) the rest of
    the series adds about ``||delta_d|| q / (1 - q)``; the value is that relative to ``||e_d||``
    (``inf`` when ``q >= 1``; the plain last-step change once it is at rounding level). The raw last-step
    change alone reads "converged" when the recursion merely crawls (small steps, rate near 1).
    ``first`` is the estimate before step 1 (``e_{-1} = 0``); with ``batch_dims`` leading problem
    dimensions the value is a tensor per problem. Every quantity is a ratio, so the recursion's
    iterates (the estimates times a fixed scale per problem) give the same value.
    """

    def __init__(self, depth: int, first: Tensor, batch_dims: int = 0):
        self.depth, self.batch_dims = depth, batch_dims
        self.saved: dict[int, Tensor] = {0: first} if depth <= 2 else {}
        self.value: Tensor | None = None

    def _norm(self, t: Tensor) -> Tensor:
        return torch.linalg.vector_norm(t.to(torch.float64), dim=tuple(range(self.batch_dims, t.dim())))

    def __call__(self, k: int, estimate: Tensor) -> None:
        if k in (self.depth - 2, self.depth - 1):
            self.saved[k] = estimate.clone()
        elif k == self.depth:
            prev, before = self.saved[k - 1], self.saved.get(k - 2)
            inc = self._norm(estimate - prev)
            inc_before = self._norm(prev - before) if before is not None else self._norm(prev)
            size = self._norm(estimate).clamp_min(1e-300)
            change = inc / size
            q = inc / inc_before.clamp_min(1e-300)
            extrapolated = torch.where(q < 1, change * q / (1 - q).clamp_min(1e-300), torch.full_like(q, math.inf))
            rounding = change <= 64 * torch.finfo(estimate.dtype).eps
            self.value = torch.where(rounding, change, extrapolated)

    def per_problem(self, count: int) -> list[float]:
        if self.value is None:  # stopped early on non-finite values
            return [math.inf] * count
        return torch.nan_to_num(self.value, nan=math.inf).reshape(-1).tolist()


def _flat(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``(rows, d_b)`` in the solver's dtype (float64 wherever float32 would under/overflow)."""
    return t.reshape(t.shape[0], -1).to(dtype)


def ridge_residual(train: list[Tensor], test: list[Tensor], scores: Tensor, lam: float,
                   terms: dict | None = None) -> float:
    """Relative residual of the ridge normal equations that the whole-model scores solve.

    ``S* = -(K/n + lambda I)^{-1} X T^T`` (push-through of ``-X (G + lambda I)^{-1} T^T``), so
    ``R = X (X^T S)/n + lambda S + X T^T`` vanishes at the solution; returns ``||R|| / ||X T^T||``
    (1 for all-zero scores). ``terms``: the Grams ``K_b`` and products ``X_b T_b^T`` the solver already
    formed (``rrinf_sgd``'s ``stats["gram_terms"]``); other blocks cost two passes each, in the scores'
    (the solver's) precision (the check needs ~1e-3, not float64), accumulated in float64.
    """
    n, m = scores.shape
    dtype = scores.dtype if scores.dtype in (torch.float32, torch.float64) else torch.float32
    S = scores.to(torch.float64)
    fit = torch.zeros_like(S)  # X (X^T S) / n + X T^T, i.e. the residual without lambda S
    xt = torch.zeros_like(S)
    terms = terms or {}
    whole, known = terms.get("all"), terms.get("blocks") or {}

    def add(K: Tensor, XT: Tensor) -> None:
        fit.add_((K @ S.to(K.dtype)).to(torch.float64), alpha=1.0 / n).add_(XT.to(torch.float64))
        xt.add_(XT.to(torch.float64))

    if whole is not None:
        add(*whole)
        return _relative(fit + lam * S, xt)
    with thin_shares(m) as shares:
        for b in range(len(train)):
            if b in known:  # the block is not read
                add(*known[b])
                continue
            x, t = _flat(train[b], dtype), _flat(test[b], dtype)
            # X (X^T S / n + T^T) and X T^T in one product: two passes over the block in all
            # (formed from S^T X: the block is never the transposed operand, which is slower)
            both = read_twice(x, S.to(x.dtype) / n, lambda P, cols, t=t: torch.cat([P + t[:, cols], t[:, cols]]), shares)
            fit.add_(both[:, :m].to(torch.float64))
            xt.add_(both[:, m:].to(torch.float64))
            del x, t, both
    return _relative(fit + lam * S, xt)


def _relative(residual: Tensor, reference: Tensor) -> float:
    """``||residual|| / ||reference||`` (0 when the reference is 0)."""
    denom = float(torch.linalg.matrix_norm(reference))
    return float(torch.linalg.matrix_norm(residual)) / denom if denom > 0 else 0.0


def reweighted_ridge_residual(train: list[Tensor], test: list[Tensor], scores: Tensor, lam: float,
                              block_weights: list[float]) -> float:
    """Relative residual of the fixed-point equations of RRInf's published (uniform-sampling) update.

    With parameter rows ``phi`` of weight ``c_b / ||phi||^2`` (``c_b`` = ``block_weights[b]``: 1 when rows are
    drawn uniformly, ``d / (B d_b)`` when one of ``B`` blocks is) the expected step vanishes where
    ``R = sum_rows w phi (phi^T S + n t) + n lambda S = 0`` (``t`` the row's test gradients, ``S`` the scores);
    returns ``||R|| / ||sum_rows w phi n t||`` (1 for all-zero scores). Three passes over each block (the row
    norms, then two products), in the scores' (the solver's) precision, accumulated in float64.
    """
    n, m = scores.shape
    dtype = scores.dtype if scores.dtype in (torch.float32, torch.float64) else torch.float32
    fit = torch.zeros(n, m, dtype=torch.float64)
    target = torch.zeros(n, m, dtype=torch.float64)
    with thin_shares(m) as shares:
        for b, c in enumerate(block_weights):
            x, t = _flat(train[b], dtype), _flat(test[b], dtype)

            def weighted(P: Tensor, cols: slice, x=x, t=t, c=c) -> Tensor:  # W (X^T S) and W (n T^T) here
                sq = col_sq_norms(x[:, cols]).to(dtype)
                w = torch.where(sq > 0, c / sq, torch.zeros_like(sq))
                return torch.cat([w * P, w * (n * t[:, cols])])

            # X W (X^T S) and X W (n T^T) in one product: the block read for the norms and twice more
            both = read_twice(x, scores.to(x.dtype), weighted, shares)
            fit.add_(both[:, :m].to(torch.float64))
            target.add_(both[:, m:].to(torch.float64))
            del x, t, both
    return _relative(fit + target + n * lam * scores.to(torch.float64), target)


def float32_unsafe_block(train_sq: Mapping[str, Tensor], test_sq: Mapping[str, Tensor]) -> tuple[str, float] | None:
    """First block whose mean squared gradient norm lies outside float32's safe range (zero blocks are fine)."""
    lo, hi = FLOAT32_SAFE
    for sq in (train_sq, test_sq):
        if not sq:
            continue
        means = torch.stack(list(sq.values())).mean(1).tolist()  # one reduction for all blocks
        for k, mean in zip(sq, means):
            if mean > 0 and not lo <= mean <= hi:
                return k, mean
    return None
