"""Helpers of the identification tests (a uniquely named module: no conftest name clashes)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
import yaml

from inflbench.checks import merge_overlay

ROOT = Path(__file__).resolve().parents[2]
SVAMP = ROOT.parent / "shared" / "data" / "svamp" / "SVAMP.json"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LLAMA = {"family": "causal_lm", "name_or_path": "tiny:llama", "max_length": 40,
         "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}, "options": {}}
UNET = {"family": "diffusion_unet", "name_or_path": "tiny:unet", "max_length": 64,
        "lora": {"r": 2, "alpha": 2, "dropout": 0.0, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]},
        "options": {"noise_draws": 2, "prompt_length": 8}}


def needs_diffusers(name: str = "diffusion") -> None:
    """Skip a diffusion test where the optional dependency (inflbench[diffusion]) is not installed."""
    if any(k in name for k in ("diffusion", "sd-", "ablation", "unet")):
        pytest.importorskip("diffusers")


def svamp_path() -> Path:
    if not SVAMP.exists():
        pytest.skip(f"{SVAMP} not present (only in the development workspace)")
    return SVAMP


def merge(base: dict, overlay: dict) -> dict:
    """Deep merge as Snakemake does for --configfile overlays, on a copy of ``base``."""
    return merge_overlay(copy.deepcopy(base), overlay)


def profile(*names: str, **overrides) -> dict:
    """config.yaml with the given configs/ overlays (and a final overlay dict) merged on top."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    for name in names:
        cfg = merge(cfg, yaml.safe_load((ROOT / "configs" / name).read_text()))
    return merge(cfg, overrides)


def data_cfg(source: str, task: str, sizes=(8, 4, 4), **options) -> dict:
    train, val, test = sizes
    return {"source": source, "tasks": [task], "sizes": {"train": train, "val": val, "test": test},
            "noise_fraction": 0.0, "options": options}


def perturb_lora(model: torch.nn.Module, scale: float = 0.05, seed: int = 1) -> torch.nn.Module:
    """Random non-zero LoRA weights (B starts at zero, which would make every A-gradient vanish)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=gen) * scale)
    return model


def max_rel_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-12)) for k in a)
