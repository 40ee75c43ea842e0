"""Config loading: JSON-schema validation with defaults, then the semantic checks each section registers,
before any job runs.

The schemas (package data, :mod:`inflbench.schemas`) are the only source of defaults. Each section's owner
registers its check with ``@section_check``: the study switches (:mod:`inflbench.studies`), ``methods``
(here), ``data`` (:mod:`inflbench.data.base`), ``model`` (:mod:`inflbench.models`), ``synthetic`` and
``layers`` (their studies). Every problem raises ``InputError`` whose message names the key (or file and line).
"""

from __future__ import annotations

import re
from pathlib import Path

from inflbench.errors import ConfigError
from inflbench.schemas import SECTION_CHECKS, load_schema, section_check, validate_schema

#: order in which the registered section checks run (the first problem is reported)
CHECK_ORDER = ("studies", "methods", "data", "model", "gradients", "synthetic", "layers", "grid")


#: names of `methods:` entries (they become wildcard values and file names)
ENTRY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def run_seeds(cfg: dict) -> list[int]:
    """The replicate seeds of a run: ``seeds`` when given, else the single ``seed``."""
    return list(cfg["seeds"]) if cfg.get("seeds") else [cfg["seed"]]


@section_check("methods")
def check_methods(cfg: dict) -> None:
    """Every entry names a registered method (itself or its ``method`` key), its parameters are valid and its
    optional dependency is installed."""
    from inflbench import methods
    from inflbench.methods import method_entry

    for name, entry in cfg["methods"].items():
        key = f"methods.{name}"
        if not ENTRY_NAME.match(str(name)):
            raise ConfigError(key, "entry names may hold only letters, digits, '_' and '-'")
        entry = entry or {}
        base = entry.get("method", name)
        valid = ", ".join(methods.available())
        if "method" in entry and (not isinstance(base, str) or base not in methods.available()):
            raise ConfigError(f"{key}.method", f"unknown influence method {base!r}; valid choices: {valid}")
        if base not in methods.available():
            raise ConfigError(key, f"unknown influence method {name!r}; valid choices: {valid} (a variant names "
                                   f"its method: {name}: {{method: <one of them>, ...}})")
        if base != name and name in methods.available():
            raise ConfigError(key, f"the entry is named after method {name!r} but computes {base!r}; rename it")
        try:
            base, params = method_entry(name, entry)
            methods.make_params(base, **params)
        except (ValueError, TypeError) as exc:
            raise ConfigError(key, str(exc)) from None
        missing = methods.get(base).missing_dependency()
        if missing:
            raise ConfigError(key, missing)


@section_check("gradients")
def check_gradients(cfg: dict) -> None:
    """``gradients.blocks`` against the model's blocks where they can be derived without weights (else the
    gradients job checks them before it computes anything)."""
    from inflbench.store import select_blocks
    from inflbench.studies.layer_choice import model_block_names

    spec = cfg["gradients"]["blocks"]
    names = model_block_names(cfg["model"]) if spec.get("include") or spec.get("exclude") else None
    select_blocks(names or [], spec, check=names is not None)


def profile_config(merged: dict, overlays: dict) -> dict:
    """The run config: Snakemake's merge of config.yaml and the overlays (--configfile, --config), or the
    overlays alone when they say ``standalone: true`` (a profile that names everything it runs)."""
    import copy

    return copy.deepcopy(dict(overlays)) if (overlays or {}).get("standalone") else merged


def profile_configfiles(profile: str | Path, root: str | Path = ".") -> list[str]:
    """The ``--configfile`` list that runs ``profile`` (a file under ``configs/``): the profiles an overlay
    builds on, as its usage line names them (``--configfile configs/base.yaml configs/<profile>``), then the
    profile itself; paths relative to the repository ``root``."""
    path = Path(profile)
    text = (Path(root) / "configs" / path.name).read_text()
    usage = re.search(rf"--configfile ((?:configs/\S+\.yaml )+)configs/{re.escape(path.name)}", text)
    return [*(usage.group(1).split() if usage else []), f"configs/{path.name}"]


def _register_sections() -> None:
    """Import the modules that register section checks."""
    import inflbench.data  # noqa: F401
    import inflbench.models  # noqa: F401
    import inflbench.studies  # noqa: F401


def validate_config(raw: dict, *, planning_only: bool = False) -> dict:
    """Full validation of a workflow config; returns the resolved config (defaults filled, switches resolved).

    ``planning_only`` (a dry run): checks of the machine the jobs will run on only warn.
    """
    from inflbench import checks

    if raw is not None and not isinstance(raw, dict):
        raise ConfigError("<root>", f"the config must be a mapping of keys, not a {type(raw).__name__}")
    checks.check_finite(raw or {})  # NaN passes every schema bound
    cfg = validate_schema(raw or {}, load_schema("config.schema.yaml"))
    checks.check_device(cfg, planning_only)
    checks.check_label_noise(cfg)
    _register_sections()
    order = [s for s in CHECK_ORDER if s in SECTION_CHECKS] + sorted(set(SECTION_CHECKS) - set(CHECK_ORDER))
    for section in order:
        SECTION_CHECKS[section](cfg)
    checks.check_damping_blocks(cfg)
    if cfg.get("grid") is not None:  # every setting of an ablation grid is a whole config
        from inflbench.studies.identification.grid import setting_configs

        setting_configs(cfg, validate_config)
    return cfg


def load_config_file(path: str | Path) -> dict:
    """One config file (a mapping; duplicate keys refused); errors name the file."""
    from inflbench.checks import load_yaml_strict

    return load_yaml_strict(path)
