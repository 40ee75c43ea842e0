"""The JSON schemas of the config (package data: ``config.schema.yaml``, ``synthetic.schema.yaml``) -- the only
source of defaults -- and the registry of per-section semantic checks.

Each config section's owner registers its check with ``@section_check("<section>")`` (data sources, model
families, the studies); :func:`inflbench.config.validate_config` fills the schema defaults, validates the
structure, then runs the registered checks. This module imports nothing else of the package.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Callable

import jsonschema
import yaml

from inflbench.errors import ConfigError

#: section -> check(cfg) of the whole (defaults-filled) config; may replace ``cfg[section]`` in place
SECTION_CHECKS: dict[str, Callable[[dict], None]] = {}


def section_check(section: str):
    """Decorator: register ``fn(cfg)`` as the semantic check of ``section``."""
    def wrap(fn):
        SECTION_CHECKS[section] = fn
        return fn
    return wrap


@functools.lru_cache(maxsize=None)
def _schema_text(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text()


def load_schema(name: str) -> dict:
    """A schema shipped with the package (works from a wheel install)."""
    return yaml.safe_load(_schema_text(name))


def fill_defaults(schema: dict, value: dict) -> None:
    """Insert schema defaults into ``value`` in place (recursively for nested objects)."""
    for key, sub in schema.get("properties", {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if isinstance(value.get(key), dict) and sub.get("type") == "object":
            fill_defaults(sub, value[key])


def schema_defaults(name: str) -> dict:
    """The object a schema fills in for an empty config."""
    out: dict = {}
    fill_defaults(load_schema(name), out)
    return out


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "<root>"


def validate_schema(cfg: dict, schema: dict, prefix: str = "") -> dict:
    """A defaults-filled copy of ``cfg``; the first schema violation raises ConfigError(key, problem)."""
    cfg = copy.deepcopy(cfg)
    fill_defaults(schema, cfg)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        path = list(err.absolute_path)
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            allowed = sorted(err.schema.get("properties", {}))
            key = _dotted([prefix] * bool(prefix) + path + [extra[0]])
            raise ConfigError(key, f"unknown key; allowed here: {allowed}")
        raise ConfigError(_dotted([prefix] * bool(prefix) + path), err.message)
    return cfg


#: config sections whose ``options`` have one schema fragment per registered family / source
OPTION_KINDS = {"model": "model_options", "data": "data_options"}


def options_schema(section: str, name: str) -> dict:
    """The schema fragment of ``<section>.options`` for model family / data source ``name``."""
    return load_schema(f"{OPTION_KINDS[section]}/{name}.schema.yaml")


def has_options_schema(section: str, name: str) -> bool:
    return resources.files(__name__).joinpath(OPTION_KINDS[section], f"{name}.schema.yaml").is_file()


def resolve_options(section: str, name: str, given: dict | None) -> dict:
    """``<section>.options`` of family / source ``name``, validated against its fragment with its defaults
    filled (errors name ``<section>.options.<key>``)."""
    if given is not None and not isinstance(given, dict):
        raise ConfigError(f"{section}.options", "must be a mapping")
    return validate_schema(given or {}, options_schema(section, name), prefix=f"{section}.options")
