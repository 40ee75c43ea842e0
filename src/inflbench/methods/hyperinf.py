"""HyperINF (Zhou et al.) Alg. 2: GFIM on the unflattened LoRA gradient + Schulz iteration.

Per block, the gradient ``g_i`` is viewed as an ``L x r`` matrix (``L`` the long
side; ``(4, 1024)`` and ``(1024, 4)`` LoRA matrices both give ``L = 1024``).
GFIM ``G_b = (1/(n r)) sum_i g_i g_i^T`` (``L x L``; the ``1/r`` of Lemma 3.1
makes ``I_r (x) G_b`` approximate the flattened Fisher, so the damping means the
same as for ``exact_block``), ``A_b = G_b + lambda_b I``, ``A_b^{-1}`` by Schulz,
and ``score(i, j) = -<g_i, A_b^{-1} g_j>_F``. The Schulz iterates are applied
to the thinner side (test or train gradients) in product form (see
``solvers.schulz_apply``); numerically the same iterates as Alg. 1.

``variant="published"``: what HyperINF's released code computes. It stores a LoRA B gradient
transposed (low-rank index first) and every other gradient as it is, forms ``G = (1/n) sum_i g_i^T g_i``
on that layout (no ``1/r``; the long side whenever ``r`` is below the layer width), adds ``0.001`` to
the damping, starts at ``X0 = 5e-5 I`` and runs the plain iteration ``X <- X (2I - A X)`` for 30 steps
without early stop, then applies ``X`` to the right of the test gradients. The plain form keeps the
directions that the product form loses in float32 when ``c0 * lambda_min`` is below float32 resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ._common import GradData, block_damping, compute_dtype, damping_meta
from ._registry import DTYPES, DampedParams, InfluenceResult, check_choice, check_int, check_pos_float, register
from ._schulz import PUBLISHED_DAMPING_OFFSET, gfim_solve, meta_from, schulz_step
from ..solvers import PUBLISHED_HYPERINF_X0, schulz_inverse, sym_gram

#: Default Schulz iterations: ours (paper §4) and the released code's.
CORRECT_ITERATIONS = 20
PUBLISHED_ITERATIONS = 30


@dataclass(frozen=True)
class HyperInfParams(DampedParams):
    iterations: int | None = field(
        default=None,
        metadata={"help": "Schulz iterations. None: 20 (variant correct; paper §4) or 30 (variant published: the "
                          "released code's default). The paper's LLM experiments use 25."},
    )
    x0: str | float = field(
        default="safe",
        metadata={
            "help": "'safe': X0 = 2/(c + lambda) I with c = ||G||_F + lambda >= lambda_max, so ||I - A X0|| < 1 is "
            "guaranteed; a float c0: X0 = c0 I (the paper/code value is 5e-5)."
        },
    )
    tol: float | None = field(
        default=1e-6,
        metadata={"help": "Stop early once ||I - A X_k||_F <= tol (the remaining iterations change nothing); None: run all "
                          "iterations. The published variant always runs all of them."},
    )
    variant: str = field(
        default="correct",
        metadata={"help": "'correct' or 'published' (as the released code: X0 = 5e-5 I, damping + 0.001, GFIM g^T g "
                          "without 1/r on its gradient layout, 30 plain Schulz iterations, no early stop)."},
    )
    dtype: str = field(default="auto", metadata={"help": "Compute dtype: 'auto' (float64 if inputs are float64, else float32), 'float32', 'float64'."})
    solver: str = field(
        default="schulz",
        metadata={"help": "'schulz' (the method) or 'direct': the damped inverse Schulz converges to, by a float64 "
                          "Cholesky solve (same estimand, faster; iterations / x0 / tol unused)."},
    )

    def __post_init__(self):
        super().__post_init__()
        check_choice("solver", self.solver, ("schulz", "direct"))
        if self.iterations is not None:
            check_int("iterations", self.iterations, 1)
        if not (isinstance(self.x0, str) and self.x0 == "safe"):
            check_pos_float("x0", self.x0)
        check_pos_float("tol", self.tol, allow_none=True)
        check_choice("variant", self.variant, ("correct", "published"))
        check_choice("dtype", self.dtype, DTYPES)

    @property
    def n_iterations(self) -> int:
        """``iterations``, or the variant's default when unset."""
        if self.iterations is not None:
            return self.iterations
        return PUBLISHED_ITERATIONS if self.variant == "published" else CORRECT_ITERATIONS


def _mat(t: torch.Tensor) -> torch.Tensor:
    """(n, *shape) -> (n, p, q) view (1-D params: (n, d, 1))."""
    return t.unsqueeze(-1) if t.dim() == 2 else t.reshape(t.shape[0], t.shape[1], -1)


def long_side(t: torch.Tensor) -> tuple[int, int, bool]:
    """(L, r, transposed): the long side L >= r of the per-sample matrix, and whether it is the column side."""
    p, q = _mat(t).shape[1:]
    return (q, p, True) if q > p else (p, q, False)


def long_columns(t: torch.Tensor) -> torch.Tensor:
    """All per-sample L-vectors as columns, ``(L, n * r)`` (a view when the layout allows)."""
    x = _mat(t)
    n, p, q = x.shape
    if q > p:  # (n, r, L): rows are L-vectors
        return x.reshape(n * p, q).transpose(0, 1)
    return x.permute(1, 0, 2).reshape(p, n * q)


def from_long_columns(W: torch.Tensor, shape: tuple, count: int) -> torch.Tensor:
    """Inverse of :func:`long_columns` for ``count`` samples: ``(L, count * r)`` -> ``(count, numel)``."""
    p = shape[0]
    q = math.prod(shape[1:]) if len(shape) > 1 else 1
    if q > p:
        return W.transpose(0, 1).reshape(count, p * q)
    return W.reshape(p, count, q).permute(1, 0, 2).reshape(count, p * q)


def schulz_setup(data: GradData, p: HyperInfParams):
    """Shared by the HyperINF variants: (dtype, per-block damping, published?, X0, empty result)."""
    lams = block_damping(p.damping, data)
    published = p.variant == "published"
    x0 = PUBLISHED_HYPERINF_X0 if published and p.x0 == "safe" else p.x0
    return compute_dtype(p.dtype, data), lams, published, x0, InfluenceResult(meta=damping_meta(lams))


@register("hyperinf", params=HyperInfParams, summary="HyperINF: GFIM (L x L per LoRA matrix) + Schulz iteration")
def hyperinf(data: GradData, p: HyperInfParams) -> InfluenceResult:
    if p.variant == "published":
        return _published(data, p)
    dt, lams, published, x0, out = schulz_setup(data, p)
    n, m = data.n, data.m
    resids, names_all, done_all = [], [], []
    by_shape: dict[tuple, list[str]] = {}
    for k in data.names:
        by_shape.setdefault(tuple(data.train[k].shape[1:]), []).append(k)
    test_side = m <= n  # apply the inverse to the thinner side
    for shape, ks in by_shape.items():
        L, r, _ = long_side(data.train[ks[0]][:1])
        rfac = 1.0 if published else float(r)
        step = schulz_step(L, dt)
        for c in range(0, len(ks), step):
            names = ks[c : c + step]
            G = torch.stack([sym_gram(long_columns(data.train[k]).to(dt), 1.0 / (n * rfac)) for k in names])
            lam = torch.tensor([lams[k] + (PUBLISHED_DAMPING_OFFSET if published else 0.0) for k in names], dtype=dt)
            side = data.test if test_side else data.train
            V = torch.stack([long_columns(side[k]).to(dt) for k in names])  # (B, L, count * r)
            W, resid, done = gfim_solve(G, lam, V, p.solver, iterations=p.n_iterations, x0=x0, tol=p.tol)
            count = m if test_side else n
            for i, k in enumerate(names):
                Wi = from_long_columns(W[i], shape, count)  # stored layout, (count, numel)
                if test_side:
                    s = data.train[k].reshape(n, -1).to(dt) @ Wi.T
                else:
                    s = Wi @ data.test[k].reshape(m, -1).to(dt).T
                out[k] = s.neg_()
            resids.append(resid)
            names_all.append(names)
            done_all.append(done)
    out.meta.update(meta_from(resids, names_all, done_all))
    return out


def released_layout(name: str, t: torch.Tensor) -> torch.Tensor:
    """Per-sample gradients ``(n, a, s)`` as the released code holds them: a LoRA B block transposed
    (low-rank index first), every other block as stored (1-D blocks as one row)."""
    if t.dim() == 2:
        return t.unsqueeze(1)
    x = t.reshape(t.shape[0], t.shape[1], -1)
    return x.transpose(1, 2) if name.endswith("lora_B") else x


def _published(data: GradData, p: HyperInfParams) -> InfluenceResult:
    """The released recipe: GFIM ``sum_i g_i^T g_i / n`` on :func:`released_layout`, plain Schulz from
    ``X0 = 5e-5 I`` (or the user's ``x0``), scores ``-<T_j X, g_i>``; blocks of equal GFIM size batched."""
    dt, lams, _, x0, out = schulz_setup(data, p)
    n, m = data.n, data.m
    by_side: dict[int, list[str]] = {}
    for k in data.names:
        by_side.setdefault(released_layout(k, data.train[k][:1]).shape[-1], []).append(k)
    r0s, resids, names_all = [], [], []
    for s, ks in by_side.items():
        step = schulz_step(s, dt)
        for c in range(0, len(ks), step):
            names = ks[c : c + step]
            M = [released_layout(k, data.train[k]).to(dt) for k in names]
            G = torch.stack([x.reshape(-1, s).T @ x.reshape(-1, s) / n for x in M])  # (B, s, s)
            lam = torch.tensor([lams[k] + PUBLISHED_DAMPING_OFFSET for k in names], dtype=dt)
            A = G.clone()
            A.diagonal(dim1=-2, dim2=-1).add_(lam[:, None])
            eye = torch.eye(s, dtype=dt)
            if p.solver == "direct":  # residuals reported as 0, as for the correct variant
                X = torch.cholesky_inverse(torch.linalg.cholesky(A.to(torch.float64))).to(dt)
                r0 = r = torch.zeros(len(names), dtype=torch.float64)
            else:
                c0 = PUBLISHED_HYPERINF_X0 if x0 == "safe" else float(x0)
                X = schulz_inverse(A, iterations=p.n_iterations, x0=c0)
                r0 = torch.linalg.matrix_norm(eye - c0 * A, ord="fro").to(torch.float64)
                r = torch.linalg.matrix_norm(eye - A @ X, ord="fro").to(torch.float64)
            for i, k in enumerate(names):
                T = released_layout(k, data.test[k]).to(dt)
                W = (T.reshape(-1, s) @ X[i]).reshape(m, -1)  # (m, a * s): T_j X per test sample
                out[k] = (M[i].reshape(n, -1) @ W.T).neg_()
            r0s.append(r0)
            resids.append(r)
            names_all.append(names)
    rows = [torch.stack([a, b, b], -1) for a, b in zip(r0s, resids)]
    out.meta.update(meta_from(rows, names_all, [0 if p.solver == "direct" else p.n_iterations]))
    return out
