"""Config of the synthetic inverse-HVP study (the ``synthetic:`` block of the workflow config).

``validate_config`` is called by the Snakefile at parse time, so a bad value stops the run before any
job starts. Semantic problems (sizes, damping, unknown names) raise ``ConfigError`` with the dotted key;
structural problems (unknown keys, wrong types) are caught by ``inflbench/schemas/synthetic.schema.yaml``,
which also holds the defaults. ``enabled`` is the study's switch (resolved in :mod:`inflbench.studies`).
"""

from __future__ import annotations

import copy
import re

from inflbench.errors import ConfigError
from inflbench.solvers.table import CLOSED_FORM_SOLVERS, FULL_INVERSE_SOLVERS, SOR_PATTERN, sor_omega  # noqa: F401
from inflbench.solvers.table import SOLVERS as SOLVER_TABLE
from inflbench.schemas import load_schema, schema_defaults, section_check

#: key -> (family, parameters, label). "normal" takes (mean, std): N(0, 5) is std 5 as in torch.normal.
DISTRIBUTIONS: dict[str, tuple[str, float, float, str]] = {
    "normal_0_1": ("normal", 0.0, 1.0, "N(0, 1)"),
    "normal_05_1": ("normal", 0.5, 1.0, "N(0.5, 1)"),
    "normal_0_5": ("normal", 0.0, 5.0, "N(0, 5)"),
    "normal_05_5": ("normal", 0.5, 5.0, "N(0.5, 5)"),
    "uniform_0_1": ("uniform", 0.0, 1.0, "U(0, 1)"),
}

#: Fixed solver names -> one-line description (SOR names are patterns, see ``SOR_PATTERN``); from the solver table.
SOLVERS: dict[str, str] = {name: e.description for name, e in SOLVER_TABLE.items()}


#: Defaults of the ``synthetic:`` block, from its schema (the only place they are written).
DEFAULTS: dict = {k: v for k, v in schema_defaults("synthetic.schema.yaml").items() if k != "enabled"}


def is_known_solver(name: str) -> bool:
    return name in SOLVERS or sor_omega(name) is not None


def _merge(defaults: dict, given: dict) -> dict:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _positive_int_list(cfg: dict, key: str) -> None:
    values = cfg[key]
    if not isinstance(values, list) or not values:
        raise ConfigError(f"synthetic.{key}", f"must be a non-empty list of positive integers, got {values!r}")
    bad = [x for x in values if not _is_int(x) or x <= 0]
    if bad:
        raise ConfigError(f"synthetic.{key}", f"must be positive integers, got {bad}")
    if len(set(values)) != len(values):
        raise ConfigError(f"synthetic.{key}", f"has duplicates: {values}")


def _positive(cfg: dict, key: str, value) -> None:
    if not _is_num(value) or not value > 0:
        raise ConfigError(f"synthetic.{key}", f"must be a number > 0, got {value!r}")


def _semantic_checks(cfg: dict) -> None:
    for key in ("dims", "n_samples"):
        _positive_int_list(cfg, key)
    seeds = cfg["seeds"]
    if not isinstance(seeds, list) or not seeds or any(not _is_int(s) or s < 0 for s in seeds):
        raise ConfigError("synthetic.seeds", f"must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError("synthetic.seeds", f"has duplicates: {seeds}")
    _positive(cfg, "damping", cfg["damping"])
    dists = cfg["distributions"]
    if not isinstance(dists, list) or not dists:
        raise ConfigError("synthetic.distributions", f"must be a non-empty list, got {dists!r}")
    unknown = [d for d in dists if d not in DISTRIBUTIONS]
    if unknown:
        raise ConfigError("synthetic.distributions",
                          f"unknown distribution(s) {unknown}; choose from {list(DISTRIBUTIONS)}")
    solvers = cfg["solvers"]
    if not isinstance(solvers, list) or not solvers:
        raise ConfigError("synthetic.solvers", f"must be a non-empty list, got {solvers!r}")
    unknown = [s for s in solvers if not isinstance(s, str) or not is_known_solver(s)]
    if unknown:
        raise ConfigError("synthetic.solvers", f"unknown solver(s) {unknown}; choose from "
                          f"{list(SOLVERS)} or sor_<omega> / sor_eq26_<omega> with 0 < omega < 2")
    for s in solvers:
        omega = sor_omega(s)
        if omega is not None and not 0.0 < omega[0] < 2.0:
            raise ConfigError("synthetic.solvers", f"SOR relaxation must be in (0, 2), got {s!r}")
    if len(set(solvers)) != len(solvers):
        raise ConfigError("synthetic.solvers", f"has duplicates: {solvers}")
    it = cfg["iterations"]
    if not _is_int(it) or it <= 0:
        raise ConfigError("synthetic.iterations", f"must be a positive integer, got {it!r}")
    if cfg["dtype"] not in ("float32", "float64"):
        raise ConfigError("synthetic.dtype", f"must be 'float32' or 'float64', got {cfg['dtype']!r}")
    _positive(cfg, "schulz_x0", cfg["schulz_x0"])
    _positive(cfg, "lissa.scale", cfg["lissa"]["scale"])
    if cfg["lissa"]["variant"] not in ("correct", "published"):
        raise ConfigError("synthetic.lissa.variant",
                          f"must be 'correct' or 'published', got {cfg['lissa']['variant']!r}")
    for key, value in (("lissa.batch_size", cfg["lissa"]["batch_size"]), ("gmres.restart", cfg["gmres"]["restart"]),
                       ("rrinf.batch_size", cfg["rrinf"]["batch_size"]), ("threads", cfg["threads"])):
        if not _is_int(value) or value <= 0:
            raise ConfigError(f"synthetic.{key}", f"must be a positive integer, got {value!r}")
    _positive(cfg, "rrinf.lr", cfg["rrinf"]["lr"])
    _positive(cfg, "converged_rtol", cfg["converged_rtol"])
    table = cfg["table"]
    if not _is_int(table["iteration"]) or not 1 <= table["iteration"] <= it:
        raise ConfigError("synthetic.table.iteration", f"must be an integer in [1, {it}], got {table['iteration']!r}")
    if table["n_samples"] is not None and table["n_samples"] not in cfg["n_samples"]:
        raise ConfigError("synthetic.table.n_samples",
                          f"must be one of synthetic.n_samples {cfg['n_samples']}, got {table['n_samples']!r}")
    if table["distribution"] is not None and table["distribution"] not in dists:
        raise ConfigError("synthetic.table.distribution",
                          f"must be one of synthetic.distributions {dists}, got {table['distribution']!r}")


def _schema_check(cfg: dict) -> None:
    """Structural check against the JSON schema (unknown keys, wrong types)."""
    import jsonschema

    schema = load_schema("synthetic.schema.yaml")
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(cfg))
    if error is not None:
        key = ".".join(["synthetic", *(str(p) for p in error.absolute_path)])
        raise ConfigError(key, error.message)


_NUMERIC_KEYS = {
    ("dims",): int, ("n_samples",): int, ("seeds",): int, ("damping",): float, ("iterations",): int,
    ("schulz_x0",): float, ("lissa", "scale"): float, ("lissa", "batch_size"): int, ("gmres", "restart"): int,
    ("rrinf", "lr"): float, ("rrinf", "batch_size"): int, ("threads",): int, ("converged_rtol",): float,
    ("table", "iteration"): int, ("table", "n_samples"): int,
}


def _number(text: str, kind):
    try:
        value = float(text)
    except ValueError:
        return text
    if kind is int:
        return int(value) if value.is_integer() and re.fullmatch(r"[+-]?\d+", text.strip()) else text
    return value


def _coerce_cli_strings(cfg: dict) -> dict:
    """``snakemake --config synthetic="{dims: [64]}"`` delivers nested values as strings: read numbers back."""
    out = copy.deepcopy(cfg)
    for path, kind in _NUMERIC_KEYS.items():
        parent = out
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        value = parent[path[-1]]
        if isinstance(value, str):
            parent[path[-1]] = _number(value, kind)
        elif isinstance(value, list):
            parent[path[-1]] = [_number(x, kind) if isinstance(x, str) else x for x in value]
    return out


def validate_config(cfg: dict | None) -> dict:
    """Check the ``synthetic:`` config block and return a copy with defaults filled in.

    Raises ``ConfigError(key, problem)`` naming the offending dotted key.
    """
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ConfigError("synthetic", f"must be a mapping, got {type(cfg).__name__}")
    enabled = cfg.get("enabled")
    cfg = {k: v for k, v in cfg.items() if k != "enabled"}
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"synthetic.{unknown[0]}", f"unknown key; allowed keys are {sorted(DEFAULTS)}")
    for key in ("lissa", "gmres", "rrinf", "table"):
        if key in cfg and not isinstance(cfg[key], dict):
            raise ConfigError(f"synthetic.{key}", f"must be a mapping, got {cfg[key]!r}")
    full = _merge(DEFAULTS, _coerce_cli_strings(cfg))
    _semantic_checks(full)  # first: the clearest messages for the common mistakes
    _schema_check(full)  # then: anything structural the semantic checks do not look at
    if full["table"]["n_samples"] is None:
        full["table"]["n_samples"] = max(full["n_samples"])
    if full["table"]["distribution"] is None:
        full["table"]["distribution"] = full["distributions"][0]
    if enabled is not None:
        full["enabled"] = enabled
    return full


def cell_params(cfg: dict) -> dict:
    """The settings that change a cell's numbers (Snakemake ``params:`` -> rerun only on change)."""
    keys = ("damping", "iterations", "solvers", "dtype", "schulz_x0", "lissa", "gmres", "rrinf")
    return {k: copy.deepcopy(cfg[k]) for k in keys}


@section_check("synthetic")
def check_synthetic(cfg: dict) -> None:
    """The ``synthetic`` section, resolved in place with defaults; ``enabled`` null = on when the block sets
    any other key (the study's meaning before it had a switch)."""
    raw = cfg.get("synthetic") or {}
    enabled = raw.get("enabled") if isinstance(raw, dict) else None
    if enabled is None:
        enabled = bool(raw) and any(k != "enabled" for k in raw)
    full = validate_config(raw)
    full["enabled"] = bool(enabled)
    cfg["synthetic"] = full
