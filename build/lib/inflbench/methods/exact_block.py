"""Exact block-diagonal damped Fisher influence (float64).

``score(i, j) = -g_j,b^T (G_b + lambda_b I)^{-1} g_i,b`` with
``G_b = (1/n) sum_i g_i,b g_i,b^T`` per block, solved directly per block with
the cheaper of the Woodbury ``n x n`` form ``-n (K_b + n lambda_b I)^{-1} C_b``
(``K_b = X_b X_b^T``, ``C_b = X_b T_b^T``) and the ``d_b x d_b`` form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._common import GradData, block_damping, damping_meta, groups
from ._exact import exact_scores
from ._registry import DampedParams, InfluenceResult, register


@dataclass(frozen=True)
class ExactBlockParams(DampedParams):
    pass


@register("exact_block", params=ExactBlockParams, summary="Exact block-diagonal damped Fisher influence (float64 direct solve)")
def exact_block(data: GradData, p: ExactBlockParams) -> InfluenceResult:
    lams = block_damping(p.damping, data)
    out = InfluenceResult(meta=damping_meta(lams))
    for names, tr, te in groups(data, dtype=torch.float64):
        lam = torch.tensor([lams[k] for k in names], dtype=torch.float64)
        s = exact_scores(tr, te, lam)
        for i, k in enumerate(names):
            out[k] = s[i]
    return out
