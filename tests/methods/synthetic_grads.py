"""Synthetic per-sample gradients with realistic structure (tests and benchmarks).

i.i.d. normal gradients make every method look like TracIn (their Fisher is
isotropic). Here each sample has a latent code (class mean + noise) seen
through a per-block linear map with a decaying spectrum, plus an isotropic
noise floor, and a heavy-tailed (log-normal) per-sample norm. Blocks share the
latent code, so whole-model and block-diagonal influence differ.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor


def roberta_lora_shapes(layers: int = 24, rank: int = 4, hidden: int = 1024) -> dict[str, tuple[int, ...]]:
    """RoBERTa-large LoRA blocks: layers x {query, value} x {A (r x h), B (h x r)}."""
    shapes = {}
    for layer in range(layers):
        for mod in ("query", "value"):
            shapes[f"layer{layer}.{mod}.lora_A"] = (rank, hidden)
            shapes[f"layer{layer}.{mod}.lora_B"] = (hidden, rank)
    return shapes


def synthetic_grads(
    shapes: Mapping[str, tuple[int, ...]],
    n_train: int,
    n_test: int,
    *,
    seed: int = 0,
    latent: int = 48,
    n_classes: int = 4,
    decay: float = 1.0,
    noise: float = 0.3,
    tail: float = 0.7,
    scale: float = 1e-3,
    dtype: torch.dtype = torch.float32,
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor, Tensor]:
    """Return ``(train, test, train_labels, test_labels)``; gradients ``(n, *shape)``."""
    gen = torch.Generator().manual_seed(int(seed))
    N = n_train + n_test
    labels = torch.randint(0, n_classes, (N,), generator=gen)
    means = 1.5 * torch.randn(n_classes, latent, generator=gen)
    z = means[labels] + torch.randn(N, latent, generator=gen)
    z = z * torch.arange(1, latent + 1, dtype=torch.float32).pow(-decay)
    mult = torch.exp(tail * torch.randn(N, generator=gen))
    train, test = {}, {}
    for name, shape in shapes.items():
        d = math.prod(shape)
        W = torch.randn(latent, d, generator=gen) / math.sqrt(latent)
        g = z @ W
        g += (noise * float(z.norm(dim=1).mean()) / math.sqrt(d)) * torch.randn(N, d, generator=gen)
        g *= (scale * mult)[:, None]
        g = g.to(dtype).reshape(N, *shape)
        train[name], test[name] = g[:n_train].clone(), g[n_train:].clone()
    return train, test, labels[:n_train], labels[n_train:]
