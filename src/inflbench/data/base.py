"""The data-source interface and its registry.

A source obtains a task's records; ``prepare_splits`` (:mod:`inflbench.data.splits`) turns them into the
stratified train/val/test tables. Adding a source: subclass ``DataSource`` in a module of this package,
decorate it with ``@register_source("name")``, import the module in ``inflbench/data/__init__.py`` and add the
schema of its ``data.options`` as ``schemas/data_options/<name>.schema.yaml``; the contract tests (tests/test_data_sources.py) run over every registered source.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from inflbench.errors import ConfigError
from inflbench.schemas import resolve_options, section_check


class DataSource(ABC):
    """One way of obtaining a task's records.

    Records are dicts with at least ``label`` (int class); text tasks use ``text_a``/``text_b``, other
    families add their own fields (they end up as CSV columns of the split tables).
    Source-specific settings live in ``data.options``: their types and defaults in the fragment
    ``schemas/data_options/<name>.schema.yaml`` (read them with ``inflbench.schemas.resolve_options``),
    further checks in ``check``.
    """

    #: the ``data.source`` value, set by :func:`register_source`
    name: str = ""
    #: whether ``load_pools`` works without the network and without files outside the package
    offline: bool = False

    def check(self, data_cfg: dict) -> None:
        """Cheap pre-run validation; raise ConfigError/DataError naming the key or file."""

    @abstractmethod
    def load_pools(self, data_cfg: dict, task: str, seed: int) -> tuple[list[dict], list[dict]]:
        """(pool that train and val are drawn from, pool that test is drawn from)."""


#: ``data.source`` value -> source instance
SOURCES: dict[str, DataSource] = {}


def register_source(name: str, **kwargs):
    """Class decorator: register an instance (built with ``kwargs``) under ``name``."""
    def wrap(cls):
        source = cls(**kwargs)
        source.name = name
        SOURCES[name] = source
        return cls
    return wrap


def get_source(name: str) -> DataSource:
    if name not in SOURCES:
        raise ConfigError("data.source", f"unknown source {name!r}; choose one of {list(SOURCES)}")
    return SOURCES[name]


def check_sources(data_cfg: dict) -> None:
    """Cheap, pre-run checks of the data config and files (raise ConfigError/DataError with one line):
    ``data.options`` against the source's schema fragment, then the source's own checks."""
    source = get_source(data_cfg["source"])
    resolve_options("data", source.name, data_cfg.get("options"))
    source.check(data_cfg)


@section_check("data")
def check_data(cfg: dict) -> None:
    """The ``data`` section: sizes, then the source's own checks (files are parsed here, before any job)."""
    if cfg["data"]["sizes"]["train"] < 2:
        raise ConfigError("data.sizes.train", "need at least 2 training samples")
    check_sources(cfg["data"])


def load_pools(data_cfg: dict, task: str, seed: int) -> tuple[list[dict], list[dict]]:
    return get_source(data_cfg["source"]).load_pools(data_cfg, task, seed)
