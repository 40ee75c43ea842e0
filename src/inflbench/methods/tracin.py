"""TracIn / Hessian-free influence: ``score(i, j) = -g_i . g_j`` (H = I)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._common import GradData, compute_dtype, cross_products
from ._registry import DTYPES, MethodParams, check_choice, register


@dataclass(frozen=True)
class TracInParams(MethodParams):
    dtype: str = field(
        default="auto",
        metadata={"help": "Compute dtype: 'auto' (float64 if the inputs are float64, else float32), 'float32', 'float64'."},
    )

    def __post_init__(self):
        check_choice("dtype", self.dtype, DTYPES)


@register("tracin", params=TracInParams, checks_by_scores=True, summary="Hessian-free (TracIn at the final checkpoint): -g_test . g_train")
def tracin(data: GradData, p: TracInParams) -> dict[str, torch.Tensor]:
    dt = compute_dtype(p.dtype, data)
    out = {}
    for names, s in cross_products(data, dt):
        s = s.neg_()
        for i, k in enumerate(names):
            out[k] = s[i]
    return out
