"""Exact block-diagonal damped Fisher influence (float64).

``score(i, j) = -g_j,b^T (G_b + lambda_b I)^{-1} g_i,b`` with
``G_b = (1/n) sum_i g_i,b g_i,b^T`` per block, solved directly per block with
the cheaper of the Woodbury ``n x n`` form ``-n (K_b + n lambda_b I)^{-1} C_b``
(``K_b = X_b X_b^T``, ``C_b = X_b T_b^T``) and the ``d_b x d_b`` form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ._common import GradData, block_damping, damping_meta
from ._exact import GRAM_DTYPES, block_exact_scores
from ._registry import DampedParams, InfluenceResult, check_choice, register


@dataclass(frozen=True)
class ExactBlockParams(DampedParams):
    gram_dtype: str = field(
        default="float64",
        metadata={"help": "Precision of the Gram products: 'float64', or 'float32' (then solved in float64; "
                          "see docs/methods.md for the measured error). Shared block statistics are float64."},
    )
    damping_scale: float = field(
        default=1.0,
        metadata={"help": "Multiplies every block's lambda (the default rule's or the given one): the damping "
                          "sweep of docs/results.md (large values approach a rescaled TracIn)."},
    )

    def __post_init__(self):
        super().__post_init__()
        check_choice("gram_dtype", self.gram_dtype, tuple(GRAM_DTYPES))
        scale = self.damping_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"parameter 'damping_scale' must be a finite number > 0; got {scale!r}")


@register("exact_block", params=ExactBlockParams, block_stats=True, summary="Exact block-diagonal damped Fisher influence (float64 direct solve)")
def exact_block(data: GradData, p: ExactBlockParams) -> InfluenceResult:
    lams = {k: lam * p.damping_scale for k, lam in block_damping(p.damping, data).items()}
    out = InfluenceResult(meta=damping_meta(lams))
    for k in data.names:
        out[k] = block_exact_scores(data, k, lams[k], p.gram_dtype)
    return out
