"""Cosine (normalised TracIn): ``score(i, j) = -cos(g_i, g_j)`` over the whole model.

Per-block scores are ``-g_i,b . g_j,b / (||g_i|| ||g_j||)`` with whole-model
norms, so the blocks sum to the total cosine score. A zero gradient scores 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._common import GradData, compute_dtype, cross_products
from ._registry import DTYPES, MethodParams, check_choice, register


@dataclass(frozen=True)
class CosineParams(MethodParams):
    dtype: str = field(
        default="auto",
        metadata={"help": "Compute dtype: 'auto' (float64 if the inputs are float64, else float32), 'float32', 'float64'."},
    )

    def __post_init__(self):
        check_choice("dtype", self.dtype, DTYPES)


def _inv_norm(sq: torch.Tensor) -> torch.Tensor:
    nrm = sq.sqrt()
    return torch.where(nrm > 0, 1.0 / nrm, torch.zeros_like(nrm))


@register("cosine", params=CosineParams, summary="Normalised TracIn: -cos(g_test, g_train) over the whole model")
def cosine(data: GradData, p: CosineParams) -> dict[str, torch.Tensor]:
    dt = compute_dtype(p.dtype, data)
    a = _inv_norm(sum(data.train_sq[k] for k in data.names))
    b = _inv_norm(sum(data.test_sq[k] for k in data.names))
    scale = (a[:, None] * b[None, :]).neg_()
    out = {}
    for names, s in cross_products(data, dt):
        for i, k in enumerate(names):
            out[k] = s[i].to(torch.float64) * scale
    return out
