"""TracIn on word embeddings restricted to shared tokens, and its top-k variant (layer-choice paper §3.1, Yeh et al.).

Meant for the word-embedding block (``gradients.word_embeddings: true``), whose rows are the tokens present
in the task data: a row of a sample's gradient is non-zero exactly when its token occurs in the sample, so
"tokens in both samples" = rows non-zero in both. For any block (rows = first parameter axis; a 1-D block
has one-element rows)::

    tracin_we:        score(i, j) = - sum_{r in S_ij} g_i[r] . g_j[r],   S_ij = rows non-zero in both
    tracin_we_top10:  the same sum over only the top_k (10) rows of S_ij with the largest ||g_i[r]||

Because rows absent from a sample are zero, ``tracin_we`` equals ``tracin`` on that block (computed that way);
the top-k restriction is what changes the score. Ties in ||g_i[r]|| go to the lower row index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._common import GradData, compute_dtype
from ._registry import DTYPES, MethodParams, check_choice, check_int, register

_TOPK_HELP = "Keep only this many shared rows (tokens) with the largest training-gradient norm; null = all shared rows."
_DTYPE_HELP = "Compute dtype: 'auto' (float64 if the inputs are float64, else float32), 'float32', 'float64'."


@dataclass(frozen=True)
class TracInWEParams(MethodParams):
    top_k: int | None = field(default=None, metadata={"help": _TOPK_HELP})
    dtype: str = field(default="auto", metadata={"help": _DTYPE_HELP})

    def __post_init__(self):
        if self.top_k is not None:
            check_int("top_k", self.top_k, 1)
        check_choice("dtype", self.dtype, DTYPES)


@dataclass(frozen=True)
class TracInWETop10Params(TracInWEParams):
    top_k: int | None = field(default=10, metadata={"help": _TOPK_HELP})


def _rows(x: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    return x.reshape(x.shape[0], x.shape[1], -1).to(dt) if x.dim() > 2 else x.to(dt)[..., None]


def shared_row_scores(tr: torch.Tensor, te: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """``(n, m)`` scores of one block given as rows ``(n, R, C)`` / ``(m, R, C)``."""
    if top_k is None:
        return -torch.einsum("irc,jrc->ij", tr, te)
    te_present = te.ne(0).any(-1)  # (m, R)
    norms = torch.linalg.vector_norm(tr, dim=-1)  # (n, R)
    out = tr.new_zeros(tr.shape[0], te.shape[0])
    for i in range(tr.shape[0]):
        order = torch.argsort(norms[i], descending=True, stable=True)
        order = order[norms[i, order] > 0]  # rows present in training sample i, largest norm first
        shared = te_present[:, order]  # (m, L)
        keep = shared & (shared.cumsum(1) <= top_k)  # the first top_k shared rows in that order
        dots = torch.einsum("jlc,lc->jl", te[:, order], tr[i, order])
        out[i] = -(dots * keep).sum(1)
    return out


def _scores(data: GradData, p: TracInWEParams) -> dict[str, torch.Tensor]:
    dt = compute_dtype(p.dtype, data)
    return {k: shared_row_scores(_rows(data.train[k], dt), _rows(data.test[k], dt), p.top_k) for k in data.names}


@register("tracin_we", params=TracInWEParams,
          summary="TracIn over the rows (tokens) non-zero in both samples (layer-choice paper TracIn_WE)")
def tracin_we(data: GradData, p: TracInWEParams) -> dict[str, torch.Tensor]:
    return _scores(data, p)


@register("tracin_we_top10", params=TracInWETop10Params,
          summary="TracIn over the top-10 shared rows (tokens) by training-gradient norm (layer-choice paper TracIn^10_WE)")
def tracin_we_top10(data: GradData, p: TracInWEParams) -> dict[str, torch.Tensor]:
    return _scores(data, p)
