"""Ablation grids of the identification study (RRInf Tables 6-8, Figure 1) as one Snakemake DAG.

The config section ``grid`` names a built-in grid (``grid: ablation-rank``) or spells one out
(``grid: {name: ..., method: rrinf, settings: {setting: overlay}}``). Each setting is a value of the wildcard
``{setting}``; its jobs get the run config with the setting's overlay merged in. A stage is shared with the
base run (plain Snakemake inputs) when the setting leaves its config sections equal to the base run's, so a
grid over ``methods`` rescored only the changed methods on the base run's data, adapter and gradients.
Target ``grid``: the stacked identification tables, the paper layout of the grid's method and its figure.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass

import pandas as pd

from inflbench.checks import merge_overlay as merge
from inflbench.errors import ConfigError, InputError
from inflbench.schemas import section_check

MB_SIZES = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

#: Built-in grids: setting name -> config overlay (deep-merged onto the run config).
GRIDS: dict[str, dict[str, dict]] = {
    # RRInf Table 6: LoRA rank (alpha = r keeps the LoRA scale of the r=8, alpha=8 main setting)
    "ablation-rank": {f"r{r}": {"model": {"lora": {"r": r, "alpha": r}}} for r in (2, 8, 12, 24)},
    # RRInf Tables 7-8 / Figure 1: one LoRA matrix per step (the paper's diffusion setting), all parameters
    # (RRInf_full), one parameter row (the paper's LLM setting), and b random rows per step (RRInf_mb)
    "ablation-rrinf-sampling": {
        "layer": {"methods": {"rrinf": {"sampling": "layer"}}},
        "full": {"methods": {"rrinf": {"sampling": "full"}}},
        "neuron": {"methods": {"rrinf": {"sampling": "neuron", "batch_size": 1}}},
        **{f"mb{b}": {"methods": {"rrinf": {"sampling": "minibatch", "batch_size": b}}} for b in MB_SIZES},
    },
}
#: The method each built-in grid studies (its paper-layout table and figure).
GRID_METHOD = {"ablation-rank": "rrinf", "ablation-rrinf-sampling": "rrinf"}
#: Config sections a setting may change, and the sections each shared stage depends on.
OVERLAY_KEYS = ("data", "model", "train", "gradients", "scores", "methods", "evaluate")
SETTING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # a wildcard value and a folder name
STAGE_KEYS = {"data": ("data",), "model": ("data", "model", "train"),
              "gradients": ("data", "model", "train", "gradients")}


@dataclass(frozen=True)
class Grid:
    name: str
    method: str | None
    settings: dict


def grid_of(cfg: dict) -> Grid | None:
    """The grid of a config (``None`` without one); built-in names resolved."""
    spec = cfg.get("grid")
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in GRIDS:
            raise ConfigError("grid", f"unknown grid {spec!r}; built-in grids: {', '.join(sorted(GRIDS))} "
                                      "(or spell one out: {name: ..., method: ..., settings: {setting: overlay}})")
        return Grid(spec, GRID_METHOD.get(spec), GRIDS[spec])
    settings = spec.get("settings") or GRIDS.get(spec["name"])
    if settings is None:
        raise ConfigError("grid.settings", f"{spec['name']!r} is not a built-in grid ({', '.join(sorted(GRIDS))}); "
                                           "give its settings")
    return Grid(spec["name"], spec.get("method", GRID_METHOD.get(spec["name"])), settings)


@functools.lru_cache(maxsize=None)
def _validated(text: str, validate) -> dict:
    return validate(json.loads(text), planning_only=True)  # the run's own validation checked the machine


def setting_configs(cfg: dict, validate) -> dict[str, dict]:
    """setting -> the config of that setting (the run config, no grid, the overlay merged in) as returned by
    ``validate`` (:func:`inflbench.config.validate_config`, passed in: this module does not import it)."""
    grid = grid_of(cfg)
    base = {**cfg, "grid": None}
    out = {}
    for setting, overlay in grid.settings.items():
        try:
            out[setting] = copy.deepcopy(_validated(json.dumps(merge(base, overlay)), validate))
        except InputError as exc:
            raise InputError(f"grid setting {setting!r}: {exc}") from None
    return out


@section_check("grid")
def check_grid(cfg: dict) -> None:
    """A known grid, setting names usable as file names, overlays over the allowed sections; the
    identification study on (the grid table is an identification table). Each setting's whole config is
    validated by :func:`inflbench.config.validate_config` after the section checks."""
    grid = grid_of(cfg)
    if grid is None:
        return
    if not cfg["identification"]["enabled"]:
        raise ConfigError("grid", "grids compare identification tables; set identification: {enabled: true}")
    for setting, overlay in grid.settings.items():
        key = f"grid.settings.{setting}"
        if not SETTING_NAME.match(str(setting)):
            raise ConfigError(key, "setting names may hold only letters, digits, '_' and '-'")
        if not isinstance(overlay, dict):
            raise ConfigError(key, "must be a config overlay (a mapping)")
        for section in overlay:
            if section not in OVERLAY_KEYS:
                raise ConfigError(f"{key}.{section}", f"a setting may change only {', '.join(OVERLAY_KEYS)}")
    if grid.method and not any(grid.method in merge(cfg["methods"], o.get("methods") or {})
                               for o in grid.settings.values()):
        raise ConfigError("grid.method", f"{grid.method!r} is scored by no setting")


def shares(cfg: dict, setting_cfg: dict, stage: str) -> bool:
    """Whether a setting reuses the base run's output of ``stage`` (data, model or gradients)."""
    return all(setting_cfg[k] == cfg[k] for k in STAGE_KEYS[stage])


def shares_scores(cfg: dict, setting_cfg: dict, method: str) -> bool:
    """Whether a setting reuses the base run's scores and metrics of ``method``."""
    return (shares(cfg, setting_cfg, "gradients") and method in cfg["methods"]
            and all(setting_cfg[k] == cfg[k] for k in ("scores", "evaluate"))
            and setting_cfg["methods"][method] == cfg["methods"][method])


def grid_table(stacked: pd.DataFrame, method: str) -> pd.DataFrame:
    """Paper layout of a grid (RRInf Tables 6-8): one row per (task, setting) of ``method``. With a ``rep``
    column (replicate seeds), mean ± std over seeds of the per-seed means."""
    from inflbench.studies.identification.metrics import pct

    rows = stacked[stacked["method"] == method]
    if "rep" in rows:
        grouped = rows.groupby(["task", "setting"], sort=False)
        rows = grouped.agg(auc_mean=("auc_mean", "mean"), auc_std=("auc_mean", "std"),
                           recall_mean=("recall_mean", "mean"), recall_std=("recall_mean", "std"),
                           seconds=("seconds", "mean"), seeds=("rep", "nunique"),
                           **({"lora_r": ("lora_r", "first")} if "lora_r" in rows else {})).reset_index()
        rows["auc"] = [pct(m, s) for m, s in zip(rows["auc_mean"], rows["auc_std"])]
        rows["recall"] = [pct(m, s) for m, s in zip(rows["recall_mean"], rows["recall_std"])]
    cols = ["task", "setting", "auc", "recall", "seconds", "auc_mean", "auc_std", "recall_mean", "recall_std",
            "seeds", "lora_r"]
    return rows[[c for c in cols if c in rows]].reset_index(drop=True)


def grid_figure(table: pd.DataFrame, method: str, title: str, out) -> None:
    """Mean ± std of AUC and recall per setting (RRInf Figure 1 for the sampling grid)."""
    from inflbench.figures import pyplot, save

    fig, axes = pyplot().subplots(1, 2, figsize=(2 + 0.6 * max(len(table), 4) * 2, 3.8))
    for ax, metric in zip(axes, ("auc", "recall")):
        for task, part in table.groupby("task", sort=False):
            x = range(len(part))
            ax.errorbar(x, part[f"{metric}_mean"], yerr=part[f"{metric}_std"], marker="o", capsize=3, label=task)
            ax.set_xticks(list(x), part["setting"], rotation=45, ha="right")
        ax.set(ylabel=f"{method} class-detection {metric}", ylim=(-0.02, 1.02))
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, out)


def stage_grid_table(inputs: dict, outputs: dict, params: dict) -> pd.DataFrame:
    """inputs summaries (one per params rows entry {rep, setting}); params grid, method, replicated, config
    -> outputs table (identification tables of every setting stacked), paper (+ figure) for ``method``."""
    from inflbench.artifacts import read_json, write_table
    from inflbench.studies.identification.stages import identification_table

    keys = [(row["rep"], row["setting"]) for row in params["rows"]]
    parts = []
    for key in dict.fromkeys(keys):
        summaries = [read_json(p) for p, k in zip(inputs["summaries"], keys) if k == key]
        part = identification_table(summaries).assign(setting=key[1])
        parts.append(part.assign(rep=key[0]) if params["replicated"] else part)
    stacked = pd.concat(parts, ignore_index=True)
    lead = ["setting"] + (["rep"] if params["replicated"] else [])
    stacked = stacked[lead + [c for c in stacked if c not in lead]]
    provenance = dict(params["config"])
    write_table(stacked, outputs["table"], provenance)
    method = params["method"]
    paper = grid_table(stacked, method) if method else stacked.iloc[:0]
    write_table(paper, outputs["paper"], provenance)
    grid_figure(paper, str(method), f"{params['grid']}: {method}", outputs["figure"])
    return stacked
