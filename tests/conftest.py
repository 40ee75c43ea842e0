"""Shared fixtures: the offline MiniLM family and tiny generated splits (helpers live in common.py)."""

from __future__ import annotations

import pytest

from common import MINILM, randomize_lora_b


@pytest.fixture(scope="session")
def tiny_splits():
    from inflbench.data import prepare_splits

    cfg = {"source": "generated", "tasks": ["generated"], "sizes": {"train": 24, "val": 8, "test": 8},
           "noise_fraction": 0.25, "generated": {"ambiguity": 0.15}}
    return prepare_splits(cfg, "generated", seed=3)


@pytest.fixture(scope="session")
def minilm(tiny_splits):
    """(family, LoRA model in eval mode, encoded splits) of the real offline MiniLM."""
    from inflbench.models import get_family

    family = get_family(MINILM, num_labels=2)
    model = family.build(seed=0).eval()
    randomize_lora_b(model)
    encoded = {k: family.encode(v) for k, v in tiny_splits.items()}
    return family, model, encoded
