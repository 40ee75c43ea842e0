"""Layer-choice study (layer-choice paper) plus RRInf App. C / HyperINF §5.2 retraining evaluations.

Package layout: ``aggregate`` (mean/rank/vote over block x validation columns), ``metrics`` (NDR, NDR-AUC,
noise deciles, cancellation C(W)), ``stats`` (win rates, mean rank, Pareto, Wilcoxon, Spearman),
``stages`` (the functions behind the ``layers_*`` Snakemake rules).

Config checks (``validate_config``) run at parse time, before any job. Group regexes are checked against the
block names of the configured model, derived without loading weights: the model is instantiated from its
``AutoConfig`` on PyTorch's ``meta`` device and LoRA is attached (~0.1 s for any model size; needs only the
model's config.json). Where that is impossible (another model family, a hub id without network) the check is
skipped with a warning and the aggregation job reports an unmatched group instead.
"""

from __future__ import annotations

import functools
import re
import sys
import warnings

from inflbench.errors import ConfigError
from inflbench.schemas import section_check

IMPLICIT_GROUPS = {"all": [".*"]}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


WE_FAMILIES = ("sequence_classification",)


@functools.lru_cache(maxsize=8)
def _block_names_cached(family: str, name_or_path: str, targets: tuple[str, ...],
                        word_embeddings: bool = False) -> tuple[str, ...] | None:
    if family != "sequence_classification":
        return None
    try:
        import torch
        from peft import LoraConfig, TaskType, get_peft_model
        from transformers import AutoModelForSequenceClassification

        from inflbench.gradients import trainable_blocks

        from inflbench.shapes import transformers_config

        config = transformers_config(name_or_path)  # paper models from their written-out configs, offline
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForSequenceClassification.from_config(config)
            model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=1, lora_alpha=1,
                                                     target_modules=list(targets)))
        names = tuple(trainable_blocks(model))
        if word_embeddings:
            from inflbench.gradients import input_embedding

            names += (input_embedding(model)[0],)
        return names
    except Exception as exc:  # noqa: BLE001 - any failure only disables the parse-time check
        print(f"inflbench: layers: cannot derive block names of {name_or_path} ({type(exc).__name__}); "
              "group regexes are checked when the scores are aggregated", file=sys.stderr)
        return None


def model_block_names(model_cfg: dict, word_embeddings: bool = False) -> list[str] | None:
    """Names of the blocks (as in the gradient/score files) of the configured model, or None;
    ``word_embeddings`` adds the input embedding block (``gradients.word_embeddings``)."""
    names = _block_names_cached(model_cfg["family"], model_cfg["name_or_path"],
                                tuple(model_cfg["lora"]["target_modules"]), bool(word_embeddings))
    return None if names is None else list(names)


def check_word_embeddings(cfg_full: dict) -> None:
    """``gradients.word_embeddings`` needs a family whose batches are token ids with a frozen input embedding."""
    if (cfg_full.get("gradients") or {}).get("word_embeddings") and cfg_full["model"]["family"] not in WE_FAMILIES:
        raise ConfigError("gradients.word_embeddings", f"supported for model families {list(WE_FAMILIES)}, "
                          f"not {cfg_full['model']['family']!r}")


def resolved_groups(layers_cfg: dict) -> dict[str, list[str]]:
    """Declared groups plus the implicit ``all`` (every block) unless the config declares its own."""
    groups = {k: list(v) for k, v in layers_cfg["groups"].items()}
    for name, patterns in IMPLICIT_GROUPS.items():
        groups.setdefault(name, list(patterns))
    return groups


def vote_k(layers_cfg: dict, n_train: int) -> int:
    """Votes of the top position: ``vote_k`` <= 1 is a fraction of n_train, > 1 an absolute count."""
    k = layers_cfg["vote_k"]
    return max(1, int(round(k * n_train))) if k <= 1 else int(k)


def validate_config(cfg_full: dict) -> dict:
    """Semantic checks of the ``layers`` section of a schema-validated config; returns the section.

    Raises ConfigError naming the key for: a group name that is not a plain identifier, a bad or unmatched
    group regex, a layer method that is not a top-level method, fractions outside their range, a vote k or
    LOGO group count larger than n_train, an unknown selection group, a bad ensemble (name, unknown method or
    group, fewer than two members); also ``gradients.word_embeddings`` on a family without token ids.
    """
    check_word_embeddings(cfg_full)
    lay = cfg_full.get("layers") or {}
    if lay.get("enabled") and not (cfg_full.get("detection") or {}).get("enabled", True):
        lay["enabled"] = False  # the study runs only with the mislabeled-data detection study
    if not lay.get("enabled", False):
        return lay
    if not lay["groups"]:
        name = cfg_full["model"]["name_or_path"]
        if name not in lay["groups_by_model"]:
            raise ConfigError("layers.groups", f"no groups for model {name!r}: declare layers.groups or "
                              f"layers.groups_by_model[{name!r}] (declared for {sorted(lay['groups_by_model'])})")
        lay["groups"] = {k: list(v) for k, v in lay["groups_by_model"][name].items()}
    n_train = cfg_full["data"]["sizes"]["train"]
    methods = lay["methods"] or list(cfg_full["methods"])
    for m in methods:
        if m not in cfg_full["methods"]:
            raise ConfigError("layers.methods", f"method {m!r} is not in the top-level methods {list(cfg_full['methods'])}")
    lay["methods"] = methods
    lay["total_only"] = total_only_methods(cfg_full, methods)
    groups = resolved_groups(lay)
    we = bool((cfg_full.get("gradients") or {}).get("word_embeddings"))
    blocks = model_block_names(cfg_full["model"], we)
    if blocks is not None:  # the blocks the gradient store holds (gradients.blocks; the WE block comes last)
        from inflbench.store import select_blocks

        base = model_block_names(cfg_full["model"])
        blocks = select_blocks(base, (cfg_full.get("gradients") or {}).get("blocks"), check=False) + blocks[len(base):]
    for name, patterns in groups.items():
        if not NAME.match(name):
            raise ConfigError(f"layers.groups.{name}", "group names may hold only letters, digits, '_' and '-'")
        if not patterns:
            raise ConfigError(f"layers.groups.{name}", "needs at least one regex")
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"layers.groups.{name}", f"invalid regex {pattern!r}: {exc}") from None
        if blocks is not None:
            from inflbench.studies.layer_choice.aggregate import match_blocks

            if not match_blocks(patterns, blocks):
                hint = ("; the word-embedding block needs gradients.word_embeddings: true"
                        if not we and any(re.search(p, "embeddings.word_embeddings") for p in patterns) else "")
                raise ConfigError(f"layers.groups.{name}", f"{patterns} matches no block of "
                                  f"{cfg_full['model']['name_or_path']} (blocks look like {blocks[0]!r}){hint}")
    if not 0 < lay["filter_fraction"] < 1:
        raise ConfigError("layers.filter_fraction", f"must lie in (0, 1), got {lay['filter_fraction']}")
    k = lay["vote_k"]
    if k > 1 and (k != int(k) or k > n_train):
        raise ConfigError("layers.vote_k", f"{k} votes: a count must be an integer <= n_train = {n_train} "
                          "(or give a fraction in (0, 1])")
    for keep in lay["selection_keep"]:
        if not 0 < keep < 1:
            raise ConfigError("layers.selection_keep", f"keep fraction must lie in (0, 1), got {keep}")
        if round(keep * n_train) < 1:
            raise ConfigError("layers.selection_keep", f"keep {keep} of {n_train} training samples keeps none")
    if lay["logo_groups"] > n_train:
        raise ConfigError("layers.logo_groups", f"{lay['logo_groups']} groups > n_train = {n_train}")
    for g in lay["selection_groups"]:
        if g not in groups:
            raise ConfigError("layers.selection_groups", f"unknown group {g!r}; declared: {sorted(groups)}")
    if lay["selection_aggregation"] not in lay["aggregations"]:
        raise ConfigError("layers.selection_aggregation",
                          f"{lay['selection_aggregation']!r} is not in layers.aggregations {lay['aggregations']}")
    for name, ens in lay.get("ensembles", {}).items():
        key = f"layers.ensembles.{name}"
        if not NAME.match(name):
            raise ConfigError(key, "ensemble names may hold only letters, digits, '_' and '-'")
        for m in ens["methods"]:
            if m not in cfg_full["methods"]:
                raise ConfigError(f"{key}.methods", f"method {m!r} is not in the top-level methods {list(cfg_full['methods'])}")
            if m in lay["total_only"]:
                raise ConfigError(f"{key}.methods", f"method {m!r} scores only the whole model (no blocks to group)")
        for g in ens["groups"]:
            if g not in groups:
                raise ConfigError(f"{key}.groups", f"unknown group {g!r}; declared: {sorted(groups)}")
        if len(ens["methods"]) * len(ens["groups"]) < 2:
            raise ConfigError(key, "an ensemble needs at least two method x group members")
    return lay


def total_only_methods(cfg_full: dict, names) -> list[str]:
    """The entries among ``names`` whose method couples blocks (scores only the whole model's ``total``)."""
    from inflbench import methods

    return [m for m in names if methods.get(methods.method_entry(m, cfg_full["methods"][m])[0]).couples_blocks]


@section_check("layers")
def check_layers(cfg: dict) -> None:
    """The ``layers`` section (see :func:`validate_config`), resolved in place."""
    cfg["layers"] = validate_config(cfg)
