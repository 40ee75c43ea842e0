"""LiSSA (Agarwal et al. 2017; Koh & Liang 2017): damped, scaled Neumann recursion per block.

Estimand: ``exact_block`` (``(G_b + lambda_b I)^{-1}``), reached as ``depth`` grows:
``x_0 = v``, ``x_k = v + (I - (G_b + lambda_b I)/s) x_{k-1}``, ``H^{-1} v ~= x_depth / s``.

Implementation: the recursion is a polynomial in ``G_b``, and
``X_b p(G_b) = p(K_b/n) X_b`` (push-through, ``K_b = X_b X_b^T``), so when
``n < d_b`` it is run on the ``n x n`` matrix ``K_b/n + lambda_b I`` with right-hand
side ``X_b T_b^T``: the same iterates, projected onto the training gradients,
at ``O(n^2 m)`` per step instead of ``O(n d_b m)``. Otherwise the ``d_b x d_b``
Fisher is formed. Divergence (non-finite values or a growing increment
``x_k - x_{k-1}``) is flagged in ``result.meta`` and warned about.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._common import GradData, block_damping, compute_dtype, damping_meta, groups
from ._registry import DTYPES, DampedParams, InfluenceResult, check_choice, check_int, check_pos_float, register
from ..progress import iteration_progress
from ..solvers import lissa_solve, sym_gram


@dataclass(frozen=True)
class LissaParams(DampedParams):
    depth: int = field(default=10, metadata={"help": "Number of recursion steps (10 in the DataInf/HyperINF experiments)."})
    scale: float | None = field(
        default=None,
        metadata={
            "help": "Scale s (must exceed lambda_max(G_b + lambda_b I)/2 to converge). None: per block "
            "s_b = ||G_b||_F + lambda_b, a guaranteed upper bound of lambda_max."
        },
    )
    variant: str = field(
        default="correct",
        metadata={
            "help": "'correct': damping added, result divided by s. 'published': the DataInf code base's "
            "recursion x_k = v + (I - G + lambda I) x_{k-1} without scaling (scale ignored); diverges once "
            "lambda_max(G) >~ 2."
        },
    )
    dtype: str = field(default="auto", metadata={"help": "Compute dtype: 'auto' (float64 if inputs are float64, else float32), 'float32', 'float64'."})

    def __post_init__(self):
        super().__post_init__()
        check_int("depth", self.depth, 0)
        check_pos_float("scale", self.scale, allow_none=True)
        check_choice("variant", self.variant, ("correct", "published"))
        check_choice("dtype", self.dtype, DTYPES)


def lissa_route(n: int, d: int, m: int, depth: int, *, gram_needed: bool) -> str:
    """Cheapest of the n x n Gram ("nspace"), d x d Fisher ("dspace") and matrix-free ("matfree") forms.

    The default scale needs ``||G_b||_F`` and hence a Gram matrix; with an explicit
    ``scale`` the matrix-free form (``G x = X^T (X x) / n``) is also allowed, which
    wins for few test samples. All forms give the same iterates.
    """
    costs = {
        "nspace": 1.25 * n * n * d + 2 * n * m * d + depth * 2 * n * n * m,
        "dspace": 1.25 * d * d * n + depth * 2 * d * d * m + 2 * n * m * d,
    }
    if not gram_needed:
        costs["matfree"] = depth * 4 * n * d * m + 2 * n * m * d
    return min(costs, key=costs.get)


#: Max bytes of Gram matrices stacked for one batched recursion.
BATCH_BYTES = 256 << 20


@register("lissa", params=LissaParams, summary="LiSSA damped/scaled Neumann recursion per block (converges to exact_block)")
def lissa(data: GradData, p: LissaParams) -> InfluenceResult:
    dt = compute_dtype(p.dtype, data)
    lams = block_damping(p.damping, data)
    n, m = data.n, data.m
    out = InfluenceResult(meta=damping_meta(lams))
    diverged: list[str] = []
    scales: list[float] = []
    pending: dict[int, list] = {}  # side -> [(name, gram, rhs, nspace)]
    itemsize = torch.finfo(dt).bits // 8

    def flush(side: int) -> None:
        items = pending.pop(side, [])
        if not items:
            return
        names = [it[0] for it in items]
        G = torch.stack([it[1] for it in items])
        V = torch.stack([it[2] for it in items])
        lam = torch.tensor([lams[k] for k in names], dtype=dt)
        fro = torch.linalg.matrix_norm(G, ord="fro")
        sc = torch.full_like(lam, p.scale) if p.scale is not None else fro + lam
        scales.extend(sc.tolist())
        est, div = lissa_solve(
            lambda x: torch.bmm(G, x),
            V,
            damping=lam[:, None, None],
            scale=sc[:, None, None],
            depth=p.depth,
            variant=p.variant,
            batch_dims=1,
            callback=iteration_progress(f"LiSSA ({len(items)} blocks at once)", p.depth),
        )
        for i, (k, _, _, nspace) in enumerate(items):
            if bool(div[i]):
                diverged.append(k)
            e = est[i] if nspace else data.train[k].reshape(n, -1).to(dt) @ est[i]
            out[k] = e.neg()

    for names, tr, te in groups(data, dtype=dt):
        d = tr.shape[-1]
        route = lissa_route(n, d, m, p.depth, gram_needed=p.scale is None)
        if route == "matfree":
            # few right-hand sides: G x = X^T (X x) / n without forming any Gram matrix
            for i, k in enumerate(names):
                X = tr[i]
                lam = lams[k]
                s = float(p.scale)
                scales.append(s)
                est, div = lissa_solve(
                    lambda x: X.T @ (X @ x) / n, te[i].T, damping=lam, scale=s, depth=p.depth, variant=p.variant
                )
                if div:
                    diverged.append(k)
                out[k] = (X @ est).neg()
            continue
        nspace = route == "nspace"
        if nspace:
            gram = sym_gram(tr, 1.0 / n)  # K_b / n: the same recursion, projected on the train gradients
            rhs = torch.bmm(tr, te.transpose(1, 2))  # X_b T_b^T  (n, m)
        else:
            gram = sym_gram(tr.transpose(1, 2), 1.0 / n)  # G_b
            rhs = te.transpose(1, 2)  # (d, m)
        side = gram.shape[-1]
        for i, k in enumerate(names):
            pending.setdefault(side, []).append((k, gram[i], rhs[i], nspace))
        if len(pending[side]) * side * (side + m) * itemsize > BATCH_BYTES:
            flush(side)
    for side in list(pending):
        flush(side)
    out.meta["diverged"] = bool(diverged)
    out.meta["diverged_blocks"] = ",".join(k for k in data.names if k in set(diverged))
    out.meta["scale_min"] = min(scales)
    out.meta["scale_max"] = max(scales)
    return InfluenceResult({k: out[k] for k in data.names}, meta=out.meta)
