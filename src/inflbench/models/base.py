"""The model-family interface (``ModelFamily``) and helpers shared by the families and the training code."""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch
from torch import nn

from inflbench.errors import ConfigError

Batch = dict[str, torch.Tensor]


def resolve_pretrained(name_or_path: str) -> str:
    """A hub id or local path as is; ``pkg:<module>`` resolves to a pip-packaged model's folder."""
    if name_or_path.startswith("pkg:"):
        module_name = name_or_path[4:]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError("model.name_or_path", f"package {module_name!r} is not installed") from exc
        if not callable(getattr(module, "get_model_path", None)):
            raise ConfigError("model.name_or_path", f"package {module_name!r} is not a model package "
                                                    "(it has no get_model_path())")
        return str(module.get_model_path())
    return name_or_path


@contextlib.contextmanager
def quiet_pretrained(name: str):
    """Load a pretrained backbone without transformers' per-load report and progress bar and without
    deprecation warnings; one log line instead. The report's "MISSING classifier.*" is expected: heads absent
    from the checkpoint are initialised from the seed, trained, and restored from the adapter."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
    logging.getLogger("inflbench").info("backbone %s loaded; task head and LoRA start from the seed (stages after "
                                        "fine-tuning restore their trained values from the adapter)", name)


def check_model_path(name_or_path: str) -> None:
    """Pre-run: a local model folder exists and holds a config (hub ids are left to the family's check)."""
    if name_or_path.startswith("tiny:"):
        return
    path = Path(resolve_pretrained(name_or_path)).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError("model.name_or_path", f"{path} is not a folder")
        if not any((path / f).is_file() for f in ("config.json", "model_index.json", "unet/config.json")):
            raise ConfigError("model.name_or_path", f"{path} holds no config.json (not a model folder)")
        return
    if _looks_local(str(path)) or name_or_path.startswith("pkg:"):
        raise ConfigError("model.name_or_path", f"folder {path} does not exist")


def _looks_local(name: str) -> bool:
    """A path rather than a hub id (``org/name``)."""
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        return True
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(name)
    except ValueError:
        return True
    return False


class ModelFamily(ABC):
    """What the pipeline needs from a model family. ``cfg`` is the ``model`` config section."""

    name: str = ""
    #: rows of the model batch per data sample (e.g. several fixed noise draws per image)
    rows_per_sample: int = 1

    def __init__(self, cfg: dict, num_labels: int | None = None):
        self.cfg = cfg
        self.num_labels = num_labels

    @abstractmethod
    def build(self, seed: int) -> nn.Module:
        """Base model with LoRA attached; only the influence-relevant parameters require grad."""

    @abstractmethod
    def encode(self, frame: pd.DataFrame) -> Batch:
        """Tensors for a whole split, first dimension = number of samples."""

    @abstractmethod
    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Loss of each sample in ``batch`` (shape ``(B,)``); samples must not interact."""

    def predict(self, model: nn.Module, batch: Batch) -> torch.Tensor | None:
        """Predicted class per sample, or None where the family has no classes."""
        return None

    def answer_scores(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor] | None:
        """Per-sample ``token_accuracy`` / ``exact_match`` of generated answers, or None where the family does not
        generate."""
        return None

    def labels(self, batch: Batch) -> torch.Tensor | None:
        return batch.get("labels")

    def check(self, cfg: dict) -> None:
        """Pre-run checks of the whole config (``model.options``, LoRA targets ...); raise ConfigError naming
        the key. Runs at config validation, before any job."""


def iterate_batches(data: Batch, batch_size: int, order: torch.Tensor | None = None) -> Iterator[Batch]:
    """Slices of an encoded split; ``order`` permutes samples (for shuffling)."""
    n = next(iter(data.values())).shape[0]
    index = torch.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        rows = index[start:start + batch_size]
        yield {k: v[rows] for k, v in data.items()}


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().cpu().clone() for k, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = {k for k, p in model.named_parameters() if p.requires_grad}
    missing = expected - set(state)
    if missing:
        raise ValueError(f"checkpoint lacks trainable parameters, e.g. {sorted(missing)[:3]}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in state.items():
            params[key].copy_(value)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
