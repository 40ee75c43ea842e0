"""Influential-data identification (RRInf §4.2, DataInf §4.2): class-detection AUC and recall.

For every test point j, each training sample i gets the pseudo label ``1[class(i) == class(j)]``.
With influence ``I[i, j]`` (positive = harmful, see :mod:`inflbench.methods`), a good estimate makes
same-class training samples the most *helpful*, i.e. the most negative. Per test point:

* **AUC** -- ROC AUC between ``-I[:, j]`` and the pseudo labels (ties count one half);
* **recall** -- share of same-class samples among the ``s`` training samples with the smallest
  influence, ``s`` = number of training samples of the test point's class (= samples per class for
  balanced tasks; ties broken by training order).

The table reports mean ± std over test points (std with ddof=0) and the method's scoring runtime,
in the layout of RRInf Table 2. Test points whose class has no training sample are left out (NaN).

Also here: small helpers shared by the identification data sources (class selection, balanced
per-class pools, prompt templates) and the ablation-grid driver (``run_grid``).
"""

from __future__ import annotations

import copy
import json
import math
import string
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from inflbench.errors import ConfigError, DataError

# --------------------------------------------------------------------------- metrics


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties sharing their average rank."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    bounds = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((bounds[:-1] + 1 + bounds[1:]) / 2, np.diff(bounds))
    return ranks


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for the boolean ``positive`` labels (Mann-Whitney; ties count one half)."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(np.asarray(score, float))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def class_detection(influence: np.ndarray, train_classes: Sequence, test_classes: Sequence) -> pd.DataFrame:
    """Per-test-point AUC and recall of ``influence`` (n_train, n_test); one row per test point."""
    influence = np.asarray(influence, dtype=float)
    train_classes, test_classes = np.asarray(train_classes), np.asarray(test_classes)
    n_train, n_test = influence.shape
    if len(train_classes) != n_train or len(test_classes) != n_test:
        raise ValueError(f"influence has shape {influence.shape} but there are {len(train_classes)} training and "
                         f"{len(test_classes)} test classes")
    rows = []
    for j in range(n_test):
        same = train_classes == test_classes[j]
        s = int(same.sum())
        if s == 0 or s == n_train:
            rows.append({"s": s, "auc": math.nan, "recall": math.nan})
            continue
        column = influence[:, j]
        if not np.isfinite(column).all():
            raise ValueError(f"test point {j}: non-finite influence values")
        top = np.argsort(column, kind="stable")[:s]  # the s most helpful (most negative) samples
        rows.append({"s": s, "auc": roc_auc(same, -column), "recall": float(same[top].mean())})
    return pd.DataFrame(rows)


def summarise(points: pd.DataFrame) -> dict:
    """Mean and std (ddof=0) of AUC and recall over the test points that have a defined value."""
    out = {}
    for metric in ("auc", "recall"):
        values = points[metric].dropna().to_numpy(float)
        out[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
        out[f"{metric}_std"] = float(values.std()) if len(values) else math.nan
    out["n_test_scored"] = int(points["auc"].notna().sum())
    return out


def pct(mean: float, std: float) -> str:
    """``65.7% ± 9.1%`` as in RRInf Table 2."""
    if not (math.isfinite(mean) and math.isfinite(std)):
        return "n/a"
    return f"{100 * mean:.1f}% ± {100 * std:.1f}%"


# --------------------------------------------------------------------------- workflow stages


def _class_column(frame: pd.DataFrame) -> np.ndarray:
    """Classes for the pseudo labels: the clean labels (identification runs have no label noise)."""
    return frame["clean_label" if "clean_label" in frame else "label"].to_numpy()


def stage_identification(scores_path: str, train_split: str, test_split: str, out_points: str, out_summary: str,
                         method: str, task: str, model_cfg: dict | None = None) -> dict:
    """Per-test-point metrics (CSV) and their summary (JSON) of one method's (n_train, n_test) scores."""
    from safetensors import safe_open

    from inflbench import data as data_mod
    from inflbench.workflow import write_table

    train, test = data_mod.read_split(train_split), data_mod.read_split(test_split)
    with safe_open(scores_path, framework="numpy") as handle:  # numpy: this job needs no torch import
        influence = handle.get_tensor("total")
        meta = json.loads((handle.metadata() or {}).get("inflbench", "{}"))
    if influence.shape != (len(train), len(test)):
        raise ValueError(f"{scores_path}: scores have shape {influence.shape}, expected (n_train, n_test) = "
                         f"{(len(train), len(test))}; were they computed against the test split?")
    if not np.isfinite(influence).all():
        raise ValueError(f"{scores_path}: non-finite scores; the method diverged")
    points = class_detection(influence, _class_column(train), _class_column(test))
    points.insert(0, "test_id", test["id"].to_numpy())
    points.insert(1, "class", _class_column(test))
    if "class_name" in test:
        points.insert(2, "class_name", test["class_name"].to_numpy())
    write_table(points, out_points, {"method": method, "task": task})
    model_cfg = model_cfg or {}
    counts = pd.Series(_class_column(train)).value_counts()
    summary = {"task": task, "method": method, "model": model_cfg.get("name_or_path"),
               "lora_r": model_cfg.get("lora", {}).get("r"), **summarise(points),
               "seconds": meta.get("seconds"), "peak_rss_mb": meta.get("peak_rss_mb"),
               "diverged": bool(meta.get("meta.diverged", False)), "n_train": len(train), "n_test": len(test),
               "n_classes": int(counts.size),
               "train_per_class": int(counts.iloc[0]) if counts.nunique() == 1 else None}
    Path(out_summary).parent.mkdir(parents=True, exist_ok=True)
    Path(out_summary).write_text(json.dumps(summary, indent=1))
    return summary


TABLE_COLUMNS = ["task", "model", "method", "auc", "recall", "seconds", "auc_mean", "auc_std", "recall_mean",
                 "recall_std", "n_train", "n_test", "n_test_scored", "n_classes", "train_per_class", "lora_r",
                 "peak_rss_mb", "diverged"]


def identification_table(summaries: Iterable[dict]) -> pd.DataFrame:
    """RRInf Table 2 layout: one row per (task, method); formatted AUC/recall plus the raw numbers."""
    frame = pd.DataFrame(list(summaries))
    frame["auc"] = [pct(m, s) for m, s in zip(frame["auc_mean"], frame["auc_std"])]
    frame["recall"] = [pct(m, s) for m, s in zip(frame["recall_mean"], frame["recall_std"])]
    order = {m: k for k, m in enumerate(dict.fromkeys(frame["method"]))}  # keep the config's method order
    frame = frame.assign(_o=frame["method"].map(order)).sort_values(["task", "_o"], kind="stable").drop(columns="_o")
    return frame[[c for c in TABLE_COLUMNS if c in frame] + [c for c in frame if c not in TABLE_COLUMNS]]


def stage_identification_table(summaries: list[str], out: str, provenance: dict) -> pd.DataFrame:
    from inflbench.workflow import write_table

    frame = identification_table(json.loads(Path(p).read_text()) for p in summaries)
    write_table(frame, out, provenance)
    return frame


def stage_identification_figure(points: dict[str, str], task: str, out: str) -> None:
    """Box plots of per-test-point AUC and recall per method (means marked) for one task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(points)
    frames = {m: pd.read_csv(points[m]) for m in methods}
    fig, axes = plt.subplots(1, 2, figsize=(2 + 1.1 * len(methods) * 2, 4))
    for ax, metric, label in zip(axes, ("auc", "recall"), ("class-detection AUC", "class-detection recall")):
        values = [frames[m][metric].dropna().to_numpy() for m in methods]
        ax.boxplot(values, showmeans=True)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right")
        if metric == "auc":
            ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set(ylabel=label, ylim=(-0.02, 1.02))
    fig.suptitle(f"Influential-data identification: {task}")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- helpers for the data sources


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


# --------------------------------------------------------------------------- ablation grids

MB_SIZES = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

#: Built-in grids: setting name -> config overlay (deep-merged after the profiles).
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
#: The method each built-in grid studies (its paper-layout table and figure); grid files may set ``method``.
GRID_METHOD = {"ablation-rank": "rrinf", "ablation-rrinf-sampling": "rrinf"}
#: Overlay keys that leave data, fine-tuning and gradients unchanged: such grids reuse the first run's.
SCORE_ONLY_KEYS = {"methods", "evaluate"}
SHARED_STAGES = ("data", "model", "gradients")
#: Snakemake target of one grid run (identification only; no synthetic study).
TARGET = "identification"


def load_grid(spec: str) -> tuple[str, dict[str, dict]]:
    """(name, settings) of a built-in grid name or of a YAML file ``{name: ..., settings: {setting: overlay}}``."""
    return _load_grid(spec)[:2]


def _load_grid(spec: str) -> tuple[str, dict[str, dict], str | None]:
    if spec in GRIDS:
        return spec, GRIDS[spec], GRID_METHOD.get(spec)
    import yaml

    path = Path(spec)
    if not path.is_file():
        raise ConfigError("--grid", f"{spec!r} is neither a built-in grid {sorted(GRIDS)} nor a file")
    grid = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(grid) - {"name", "settings", "method"})
    if unknown:
        raise ConfigError(f"{path.name}:{unknown[0]}", "unknown key; a grid file has name, settings and method")
    settings = grid.get("settings")
    if not isinstance(settings, dict) or not settings or not all(isinstance(v, dict) for v in settings.values()):
        raise ConfigError(f"{path.name}:settings", "must map setting names to config overlays")
    return str(grid.get("name", path.stem)), settings, grid.get("method")


def _link(path: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        return
    try:
        dest.hardlink_to(path)
    except OSError:
        import shutil

        shutil.copy2(path, dest)


def share_upstream(source: Path, target: Path, keep_methods: Iterable[str] = ()) -> None:
    """Hard-link the data, model and gradient files of one run into another (same files, same mtimes),
    plus the scores and identification metrics of ``keep_methods`` (methods the grid leaves unchanged)."""
    keep = set(keep_methods)
    for task_dir in (d for d in source.iterdir() if (d / "data").is_dir() and d.name != "logs"):
        for stage in SHARED_STAGES:
            for path in (task_dir / stage).rglob("*") if (task_dir / stage).is_dir() else ():
                if path.is_file():
                    _link(path, target / path.relative_to(source))
        for method in keep:
            names = [f"scores/{method}.safetensors", f"scores/{method}.config.json",
                     f"metrics/identification_{method}.csv", f"metrics/identification_{method}.config.json",
                     f"metrics/identification_summary_{method}.json"]
            for name in names:
                if (task_dir / name).is_file():
                    _link(task_dir / name, target / (task_dir / name).relative_to(source))


def grid_table(stacked: pd.DataFrame, method: str) -> pd.DataFrame:
    """Paper layout of a grid (RRInf Tables 6-8): one row per (task, setting) of ``method``."""
    rows = stacked[stacked["method"] == method]
    cols = ["task", "setting", "auc", "recall", "seconds", "auc_mean", "auc_std", "recall_mean", "recall_std", "lora_r"]
    return rows[[c for c in cols if c in rows]].reset_index(drop=True)


def grid_figure(table: pd.DataFrame, method: str, title: str, out: Path) -> None:
    """Mean ± std of AUC and recall per setting (RRInf Figure 1 for the sampling grid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(2 + 0.6 * max(len(table), 4) * 2, 3.8))
    for ax, metric in zip(axes, ("auc", "recall")):
        for task, part in table.groupby("task", sort=False):
            x = range(len(part))
            ax.errorbar(x, part[f"{metric}_mean"], yerr=part[f"{metric}_std"], marker="o", capsize=3, label=task)
            ax.set_xticks(list(x), part["setting"], rotation=45, ha="right")
        ax.set(ylabel=f"{method} class-detection {metric}", ylim=(-0.02, 1.02))
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def run_grid(profiles: Sequence[str], grid: str, results_dir: str = "results", cores: int = 2,
             only: Sequence[str] | None = None, snakemake_args: Sequence[str] = (), dry_run: bool = False,
             share: bool | None = None, snakefile: str | None = None) -> pd.DataFrame:
    """One Snakemake run per grid setting, then the identification tables stacked with a ``setting`` column.

    Setting ``s`` runs as ``<run>-s`` (``<run>`` from the profiles) with ``--configfile <profiles> <overlay>``
    and the target ``identification``. Grids that only change ``methods``/``evaluate`` reuse the first
    setting's data, adapter and gradients, and the scores of the methods no setting changes (hard links),
    so only the changed methods are rescored. Written to ``<results_dir>/grids/``: the overlays
    (``<tag>/<s>.yaml``), the stacked tables (``<tag>.csv``) and, for the grid's method, the paper layout
    (``<tag>_<method>.csv``) and a figure (``<tag>_<method>.png``).
    """
    import yaml

    root = Path(__file__).resolve().parents[2]  # the repository: Snakefile, config.yaml
    name, settings, method = _load_grid(grid)
    unknown = sorted(set(only or ()) - set(settings))
    if unknown:
        raise ConfigError("--only", f"unknown setting {unknown[0]!r}; the grid has {list(settings)}")
    profiles = [str(Path(p).resolve()) for p in profiles]
    base = merged_profiles(profiles)
    validate_grid(base, {k: v for k, v in settings.items() if not only or k in only})
    base_run = str(base.get("run", "default"))
    tag = base_run if base_run == name else f"{base_run}-{name}"
    results = Path(results_dir).resolve()
    out_dir = results / "grids" / tag
    out_dir.mkdir(parents=True, exist_ok=True)
    if share is None:
        share = all(set(overlay) <= SCORE_ONLY_KEYS for overlay in settings.values())
    changed = {m for overlay in settings.values() for m in (overlay.get("methods") or {})}
    # scores a sharing grid leaves unchanged (none when it changes the evaluation)
    keep = () if any("evaluate" in o for o in settings.values()) else set(base.get("methods") or {}) - changed
    tables, first = [], None
    for setting, overlay in settings.items():
        if only and setting not in only:
            continue
        run = f"{tag}-{setting}"
        overlay_path = out_dir / f"{setting}.yaml"
        overlay_path.write_text(yaml.safe_dump({**overlay, "run": run}, sort_keys=False))
        if share and first is not None and not dry_run:
            share_upstream(results / first, results / run, keep)
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile or root / "Snakefile"), TARGET,
               "--cores", str(cores), *(["--dry-run"] if dry_run else []), *snakemake_args,
               "--configfile", *profiles, str(overlay_path), "--config", f"results_dir={results}"]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=root)
        first = first or run
        if not dry_run:
            tables.append(pd.read_csv(results / run / "tables" / "identification.csv").assign(setting=setting))
    if not tables:
        return pd.DataFrame()
    combined = pd.concat(tables, ignore_index=True)
    combined = combined[["setting"] + [c for c in combined if c != "setting"]]
    combined.to_csv(out_dir.with_suffix(".csv"), index=False)
    if method and method in set(combined["method"]):
        paper = grid_table(combined, method)
        paper.to_csv(out_dir.parent / f"{tag}_{method}.csv", index=False)
        grid_figure(paper, method, f"{name}: {method}", out_dir.parent / f"{tag}_{method}.png")
    return combined


def _merge(base: dict, overlay: dict) -> dict:
    """Deep merge as Snakemake merges --configfile overlays."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def merged_profiles(profiles: Sequence[str]) -> dict:
    """config.yaml with the profiles merged on top, as Snakemake's ``--configfile`` does."""
    from inflbench.config import load_config_file, profile_config

    overlays: dict = {}
    for path in profiles:
        overlays = _merge(overlays, load_config_file(path))
    default = load_config_file(Path(__file__).resolve().parents[2] / "config.yaml")
    return profile_config(_merge(default, overlays), overlays)


def validate_grid(base: dict, settings: dict[str, dict]) -> None:
    """Every setting's config (``base`` + overlay) is valid, checked before the first run (the error names
    the setting)."""
    from inflbench.config import validate_config
    from inflbench.errors import InputError

    for setting, overlay in settings.items():
        try:
            validate_config(copy.deepcopy(_merge(base, overlay)))
        except InputError as exc:
            raise InputError(f"grid setting {setting!r}: {exc}") from None


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description="Run an ablation grid: one workflow run per setting, tables stacked (docs/identification.md).")
    parser.add_argument("profiles", nargs="+", help="config profiles, e.g. configs/ablation-rank.yaml")
    parser.add_argument("--grid", help=f"built-in grid {sorted(GRIDS)} or a grid YAML file "
                                       "(default: the stem of the last configs/ablation-*.yaml profile)")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="run only these settings")
    parser.add_argument("--no-share", action="store_true", help="recompute data, fine-tuning and gradients per setting")
    parser.add_argument("--dry-run", action="store_true", help="pass --dry-run to snakemake")
    parser.add_argument("--snakefile", help="workflow to run (default: the repository's Snakefile)")
    args, extra = parser.parse_known_args(argv)
    grid = args.grid or next((Path(p).stem for p in reversed(args.profiles) if Path(p).stem in GRIDS), None)
    if grid is None:
        parser.error(f"give --grid (one of {sorted(GRIDS)} or a grid file)")
    from inflbench.errors import InputError

    try:
        table = run_grid(args.profiles, grid, args.results_dir, args.cores, args.only, extra, args.dry_run,
                         share=False if args.no_share else None, snakefile=args.snakefile)
    except InputError as exc:
        sys.exit(f"inflbench: invalid input: {exc}")
    except subprocess.CalledProcessError as exc:
        sys.exit(f"inflbench: a grid run failed (snakemake exit status {exc.returncode}); see its output above")
    if len(table):
        method = _load_grid(grid)[2]
        shown = grid_table(table, method) if method and method in set(table["method"]) else table
        cols = [c for c in ("task", "setting", "method", "auc", "recall", "seconds") if c in shown]
        print(shown[cols].to_string(index=False))


if __name__ == "__main__":
    main()
