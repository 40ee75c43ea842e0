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


def validate_config(raw: dict) -> dict:
    """Full validation of a workflow config; returns the resolved config (defaults filled)."""
    from inflbench import methods
    from inflbench.data import check_sources
    from inflbench.models import FAMILIES

    cfg = validate_schema(raw or {}, _load_schema("config.schema.yaml"))
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
    check_sources(cfg["data"])
    if cfg.get("synthetic"):
        from inflbench.synthetic import validate_config as validate_synthetic

        cfg["synthetic"] = validate_synthetic(cfg["synthetic"])
    # --- issue #6 (identification): family pre-run checks of model.options and LoRA targets
    # (causal_lm, diffusion_unet define ``check(cfg)``; families without it are skipped)
    from inflbench.models import get_family

    family = get_family(cfg["model"])
    family_check = getattr(family, "check", None)
    if family_check is not None:
        family_check(cfg)
    for name in cfg["methods"]:  # model-based scoring (kronfluence) scores model rows, not samples
        if methods.get(name).needs_model and family.rows_per_sample != 1:
            raise ConfigError(f"methods.{name}", f"not available for model family {cfg['model']['family']!r}, "
                                                 f"which uses {family.rows_per_sample} model rows per sample")
    # --- end issue #6
    check_gradient_blocks(cfg)
    # --- issue #5 (layer study): semantic checks of the layers section (group regexes vs model blocks ...)
    from inflbench.layers import validate_config as validate_layers

    cfg["layers"] = validate_layers(cfg)
    # --- end issue #5
    return cfg


def check_gradient_blocks(cfg: dict) -> None:
    """``gradients.blocks`` against the model's blocks where they can be derived without weights (else the
    gradients stage checks them before computing anything)."""
    from inflbench.layers import model_block_names
    from inflbench.store import select_blocks

    spec = cfg["gradients"]["blocks"]
    names = model_block_names(cfg["model"]) if spec.get("include") or spec.get("exclude") else None
    select_blocks(names or [], spec, check=names is not None)


def profile_config(merged: dict, overlays: dict) -> dict:
    """The run config: Snakemake's merge of config.yaml and the overlays (--configfile, --config), or the
    overlays alone when they say ``standalone: true`` (a profile that names everything it runs)."""
    return copy.deepcopy(dict(overlays)) if (overlays or {}).get("standalone") else merged


def load_config_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError("--configfile", f"{path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError("--configfile", f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
