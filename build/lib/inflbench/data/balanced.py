"""Helpers shared by the class-balanced data sources (SVAMP, generated LM prompts, digits, image styles,
DreamBooth subjects): option and template checks, class selection, balanced per-class pools."""

from __future__ import annotations

import math
import string
from typing import Iterable, Sequence

import numpy as np

from inflbench.errors import ConfigError, DataError


def check_options(key: str, options: dict, allowed: Iterable[str]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", f"unknown option; allowed here: {sorted(allowed)}")


def check_template(key: str, template, required: Sequence[str], allowed: Sequence[str]) -> str:
    """A ``str.format`` template that uses every ``required`` placeholder and only ``allowed`` ones."""
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(key, "must be a non-empty string")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ConfigError(key, f"is not a valid template ({exc})") from None
    missing = [f for f in required if f not in fields]
    if missing:
        raise ConfigError(key, f"template {template!r} lacks the placeholder {{{missing[0]}}}")
    extra = sorted(f for f in fields if f not in allowed)
    if extra:
        raise ConfigError(key, f"template {template!r} uses unknown placeholder {{{extra[0]}}}; "
                               f"available: {', '.join('{' + a + '}' for a in allowed)}")
    return template


def select_classes(key: str, requested, available: Sequence[str], normalise=lambda c: c) -> list[str]:
    """The requested class names (canonical spelling, given order), or all ``available`` when None."""
    if requested is None:
        return list(available)
    if isinstance(requested, (str, int)) or not isinstance(requested, Sequence) or not requested:
        raise ConfigError(key, "must be a non-empty list of class names")
    chosen = []
    for name in requested:
        canonical = normalise(str(name))
        if canonical not in available:
            raise ConfigError(key, f"unknown class {name!r}; choose from {list(available)}")
        if canonical in chosen:
            raise ConfigError(key, f"class {name!r} is listed twice")
        chosen.append(canonical)
    if len(chosen) < 2:
        raise ConfigError(key, "need at least two classes for class detection")
    return chosen


def per_class_quota(sizes: dict, n_classes: int) -> tuple[int, int]:
    """(train+val, test) samples to draw per class so that stratified splits of ``sizes`` are balanced."""
    return (math.ceil((sizes["train"] + sizes["val"]) / n_classes), math.ceil(sizes["test"] / n_classes))


def check_counts(counts: dict[str, int], need: int, where: str) -> None:
    """DataError naming the first class with fewer than ``need`` samples."""
    for name, count in counts.items():
        if count < need:
            raise DataError(f"{where}: class {name!r} has {count} samples but {need} are needed "
                            "(train+val+test per class from data.sizes); lower data.sizes or drop the class")


def balanced_pools(by_class: dict[str, list[dict]], sizes: dict, seed: int,
                   where: str) -> tuple[list[dict], list[dict]]:
    """Disjoint per-class draws: (train+val pool, test pool), each with the same count per class."""
    tv, te = per_class_quota(sizes, len(by_class))
    check_counts({k: len(v) for k, v in by_class.items()}, tv + te, where)
    rng = np.random.default_rng(seed)
    trainval, test = [], []
    for name in by_class:
        order = rng.permutation(len(by_class[name]))
        trainval += [by_class[name][i] for i in order[:tv]]
        test += [by_class[name][i] for i in order[tv:tv + te]]
    return trainval, test
