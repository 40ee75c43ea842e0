"""Model families behind one interface: build a LoRA model, encode a split, per-sample losses.

The gradient and training code only sees ``ModelFamily`` (:mod:`inflbench.models.base`); nothing there
assumes classification. Families: ``sequence_classification`` (``seqcls``), ``causal_lm``, ``diffusion_unet``
(``diffusion``). Adding a family: subclass ``ModelFamily`` in a module of this package, add one line to
``FAMILIES`` and the schema of its ``model.options`` (types and defaults) as
``schemas/model_options/<family>.schema.yaml``; the contract tests (tests/test_model_families.py) run over
every entry.
"""

from __future__ import annotations

import importlib

from inflbench.errors import ConfigError
from inflbench.schemas import resolve_options, section_check
from inflbench.models.base import (Batch, ModelFamily, check_model_path, iterate_batches, load_trainable,
                                   pick_device, resolve_pretrained, trainable_state)

# family name -> "module:Class"; modules are imported lazily so optional dependencies stay optional
FAMILIES: dict[str, str] = {
    "sequence_classification": "inflbench.models.seqcls:SequenceClassification",
    "causal_lm": "inflbench.models.causal_lm:CausalLM",
    "diffusion_unet": "inflbench.models.diffusion:DiffusionUNet",
}



def family_class(family: str) -> type[ModelFamily]:
    """The class registered as ``family`` (imports its module)."""
    if family not in FAMILIES:
        raise ConfigError("model.family", f"unknown family {family!r}; choose one of {list(FAMILIES)}")
    module_name, cls_name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def get_family(cfg: dict, num_labels: int | None = None) -> ModelFamily:
    return family_class(cfg["family"])(cfg, num_labels=num_labels)


@section_check("model")
def check_model(cfg: dict) -> None:
    """The ``model`` section: a registered family, its options (schema fragment), the family's own checks (``ModelFamily.check``), and no
    model-based method (kronfluence scores model rows) for a family with several rows per sample."""
    from inflbench import methods

    family = get_family(cfg["model"])
    resolve_options("model", cfg["model"]["family"], cfg["model"].get("options"))  # its schema fragment
    check_model_path(cfg["model"]["name_or_path"])
    family.check(cfg)
    for name in cfg["methods"]:
        if methods.get(methods.method_entry(name, cfg["methods"][name])[0]).needs_model and family.rows_per_sample != 1:
            raise ConfigError(f"methods.{name}", f"not available for model family {cfg['model']['family']!r}, "
                                                 f"which uses {family.rows_per_sample} model rows per sample")


__all__ = ["FAMILIES", "Batch", "check_model", "ModelFamily", "family_class", "get_family", "iterate_batches", "load_trainable",
           "pick_device", "resolve_pretrained", "trainable_state"]
