"""HyperINF with the full (flattened) Fisher per block: Schulz on ``G_b + lambda_b I``.

Estimand: ``exact_block``. Schulz iterates are polynomials in ``G_b`` and
``X_b p(G_b) = p(K_b/n) X_b``, so the iteration runs on whichever of the
``d_b x d_b`` Fisher or the ``n x n`` Gram ``K_b/n`` is smaller -- identical
scores (same scalar ``X0``, chosen from ``||G_b||_F`` which both sides share).
``variant="published"`` as the released full-rank variant (``X0 = 5e-5 I``, damping + 0.001, 30 iterations).
``solver="direct"``: the converged estimand by the ``exact_block`` solve (float64 Cholesky).
"""

from __future__ import annotations

import torch

from ._common import GradData
from ._exact import block_exact_scores
from ._registry import InfluenceResult, register
from ._schulz import PUBLISHED_DAMPING_OFFSET, meta_from, schulz_solve
from ._stats import flat, side_of, stacked_grams
from .hyperinf import HyperInfParams, schulz_setup


@register("hyperinf_fim", params=HyperInfParams, block_stats=True,
          summary="HyperINF on flattened gradients: Schulz on the damped block Fisher")
def hyperinf_fim(data: GradData, p: HyperInfParams) -> InfluenceResult:
    dt, lams, published, x0, out = schulz_setup(data, p)
    n = data.n
    offset = PUBLISHED_DAMPING_OFFSET if published else 0.0
    if p.solver == "direct":
        for k in data.names:
            out[k] = block_exact_scores(data, k, lams[k] + offset)
        out.meta.update({"schulz_iterations_run": 0.0, "diverged": False, "diverged_blocks": ""})
        return out
    resids, names_all, done_all = [], [], []
    items = [(k, side_of(n, data.dim(k))) for k in data.names]
    for names, sides, G, V in stacked_grams(data, items, dt):
        lam = torch.tensor([lams[k] + offset for k in names], dtype=dt)
        W, resid, done = schulz_solve(G, lam, V, iterations=p.n_iterations, x0=x0, tol=p.tol)
        for i, k in enumerate(names):
            s = W[i] if sides[i] == "n" else flat(data.train[k]).to(dt) @ W[i]
            out[k] = s.neg()
        resids.append(resid)
        names_all.append(names)
        done_all.append(done)
    out.meta.update(meta_from(resids, names_all, done_all))
    return out
