"""HyperINF with the full (flattened) Fisher per block: Schulz on ``G_b + lambda_b I``.

Estimand: ``exact_block``. Schulz iterates are polynomials in ``G_b`` and
``X_b p(G_b) = p(K_b/n) X_b``, so the iteration runs on whichever of the
``d_b x d_b`` Fisher or the ``n x n`` Gram ``K_b/n`` is smaller -- identical
scores (same scalar ``X0``, chosen from ``||G_b||_F`` which both sides share).
``variant="published"`` as for ``hyperinf`` (``X0 = 5e-5 I``, damping + 0.001).
"""

from __future__ import annotations

import torch

from ._common import GradData, groups
from ._registry import InfluenceResult, register
from ._schulz import PUBLISHED_DAMPING_OFFSET, meta_from, schulz_solve
from .hyperinf import HyperInfParams, schulz_setup
from ..solvers import sym_gram


@register("hyperinf_fim", params=HyperInfParams, summary="HyperINF on flattened gradients: Schulz on the damped block Fisher")
def hyperinf_fim(data: GradData, p: HyperInfParams) -> InfluenceResult:
    dt, lams, published, x0, out = schulz_setup(data, p)
    n = data.n
    resids, names_all, done_all = [], [], []
    for names, tr, te in groups(data, dtype=dt):
        d = tr.shape[-1]
        lam = torch.tensor([lams[k] + (PUBLISHED_DAMPING_OFFSET if published else 0.0) for k in names], dtype=dt)
        if n <= d:
            G = sym_gram(tr, 1.0 / n)  # K_b / n
            C = torch.bmm(tr, te.transpose(1, 2))
            s, resid, done = schulz_solve(G, lam, C, iterations=p.iterations, x0=x0, tol=p.tol)
        else:
            G = sym_gram(tr.transpose(1, 2), 1.0 / n)
            W, resid, done = schulz_solve(G, lam, te.transpose(1, 2), iterations=p.iterations, x0=x0, tol=p.tol)
            s = torch.bmm(tr, W)
        s = s.neg_()
        for i, k in enumerate(names):
            out[k] = s[i]
        resids.append(resid)
        names_all.append(names)
        done_all.append(done)
    out.meta.update(meta_from(resids, names_all, done_all))
    return out
