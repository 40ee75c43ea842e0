"""Config loading: JSON-schema validation with defaults, then semantic checks, before any job runs.

Every problem raises ``InputError`` whose message names the key (or file and line).
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from inflbench.errors import ConfigError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def _load_schema(name: str) -> dict:
    path = SCHEMA_DIR / name
    if not path.is_file():  # installed without the repository: ship-with-package fallback
        path = Path(__file__).with_name("schemas") / name
    return yaml.safe_load(path.read_text())


def _fill_defaults(schema: dict, value: dict) -> None:
    """Insert schema defaults into ``value`` in place (recursively for nested objects)."""
    for key, sub in schema.get("properties", {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if isinstance(value.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(sub, value[key])


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "<root>"


def validate_schema(cfg: dict, schema: dict, prefix: str = "") -> dict:
    """A defaults-filled copy of ``cfg``; the first schema violation raises ConfigError(key, problem)."""
    cfg = copy.deepcopy(cfg)
    _fill_defaults(schema, cfg)
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


def validate_config(raw: dict, *, planning_only: bool = False) -> dict:
    """Full validation of a workflow config; returns the resolved config (defaults filled).

    ``planning_only`` (a dry run): checks of the machine the jobs will run on only warn.
    """
    from inflbench import checks, methods
    from inflbench.data import check_sources
    from inflbench.models import FAMILIES

    if raw is not None and not isinstance(raw, dict):
        raise ConfigError("<root>", f"the config must be a mapping of keys, not a {type(raw).__name__}")
    checks.check_finite(raw or {})
    cfg = validate_schema(raw or {}, _load_schema("config.schema.yaml"))
    checks.check_device(cfg, planning_only)
    if cfg["model"]["family"] not in FAMILIES:
        raise ConfigError("model.family", f"unknown family {cfg['model']['family']!r}; choose one of {list(FAMILIES)}")
    for name, params in cfg["methods"].items():
        try:
            methods.make_params(name, **params)
        except ValueError as exc:
            raise ConfigError(f"methods.{name}", str(exc)) from None
        missing = methods.get(name).missing_dependency()
        if missing:
            raise ConfigError(f"methods.{name}", missing)
    if cfg["data"]["sizes"]["train"] < 2:
        raise ConfigError("data.sizes.train", "need at least 2 training samples")
    checks.check_label_noise(cfg)
    check_sources(cfg["data"])
    if cfg.get("synthetic"):
        from inflbench.synthetic import validate_config as validate_synthetic

        cfg["synthetic"] = validate_synthetic(cfg["synthetic"])
    # --- issue #6 (identification): family pre-run checks of model.options and LoRA targets
    # (causal_lm, diffusion_unet define ``check(cfg)``; families without it are skipped)
    from inflbench.models import get_family

    family = get_family(cfg["model"])
    checks.check_model_path(cfg["model"]["name_or_path"])
    family_check = getattr(family, "check", None)
    if family_check is not None:
        family_check(cfg)
    for name in cfg["methods"]:  # model-based scoring (kronfluence) scores model rows, not samples
        if methods.get(name).needs_model and family.rows_per_sample != 1:
            raise ConfigError(f"methods.{name}", f"not available for model family {cfg['model']['family']!r}, "
                                                 f"which uses {family.rows_per_sample} model rows per sample")
    # --- end issue #6
    # --- issue #5 (layer study): semantic checks of the layers section (group regexes vs model blocks ...)
    from inflbench.layers import validate_config as validate_layers

    cfg["layers"] = validate_layers(cfg)
    # --- end issue #5
    from inflbench.layers import model_block_names

    if any(isinstance((p or {}).get("damping"), dict) for p in cfg["methods"].values()):
        we = bool(cfg["gradients"].get("word_embeddings"))
        checks.check_damping_blocks(cfg, model_block_names(cfg["model"], we))
    return cfg


def load_config_file(path: str | Path) -> dict:
    """One config file (a mapping; duplicate keys refused); errors name the file."""
    from inflbench.checks import load_yaml_strict

    return load_yaml_strict(path)
