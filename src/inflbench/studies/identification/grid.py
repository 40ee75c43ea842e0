"""Ablation grids of the identification study (RRInf Tables 6-8, Figure 1): one workflow run per setting.

``run_grid`` validates every setting first, then runs Snakemake once per setting (``<run>-<setting>``), and
stacks the identification tables; with ``seeds: [..]`` every setting runs every replicate seed and the paper
layout reports mean, std and 95% CI over the seeds. Grids that change only the scoring reuse the first run's data, adapter and
gradients (hard links), so only the changed methods are rescored. The workflow folder (Snakefile,
config.yaml) is given by the caller (``scripts/identification_grid.py`` passes the repository).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from inflbench.errors import ConfigError


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


def _task_dirs(run: Path) -> list[Path]:
    """The task folders of a run, those of every replicate seed (``seed<N>/<task>``) included."""
    roots = [run] + sorted(d for d in run.glob("seed*") if d.is_dir() and d.name[4:].isdigit())
    return [d for root in roots for d in sorted(root.iterdir()) if (d / "data").is_dir() and d.name != "logs"]


def share_upstream(source: Path, target: Path, keep_methods: Iterable[str] = ()) -> None:
    """Hard-link the data, model and gradient files of one run into another (same files, same mtimes),
    plus the scores and identification metrics of ``keep_methods`` (methods the grid leaves unchanged);
    every replicate seed's files when the run has ``seeds``."""
    keep = set(keep_methods)
    for task_dir in _task_dirs(source):
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


SEED_METRICS = ("auc", "recall")


def seeds_aggregate(stacked: pd.DataFrame) -> pd.DataFrame:
    """Per (task, setting, method) over the ``seed`` column: ``n_seeds``; ``<m>_mean``, ``<m>_std`` (ddof 1),
    ``<m>_ci_low``, ``<m>_ci_high`` (t-based 95%) of the per-seed mean ``m`` in ``auc``, ``recall``; mean
    seconds; ``auc``/``recall`` as ``mean ± std`` strings. The std is over seeds here, not over test points."""
    from inflbench.replicates import aggregate
    from inflbench.studies.identification.metrics import pct

    agg = aggregate(stacked, [f"{m}_mean" for m in SEED_METRICS] + ["seconds"], keys=["task", "setting", "method"])
    out = agg[["task", "setting", "method", "n_seeds"]].copy()
    for m in SEED_METRICS:
        for stat in ("mean", "std", "ci_low", "ci_high"):
            out[f"{m}_{stat}"] = agg[f"{m}_mean_{stat}"]
        out[m] = [pct(a, b) for a, b in zip(out[f"{m}_mean"], out[f"{m}_std"])]
    out["seconds"] = agg["seconds_mean"]
    return out


def grid_table(stacked: pd.DataFrame, method: str) -> pd.DataFrame:
    """Paper layout of a grid (RRInf Tables 6-8): one row per (task, setting) of ``method``; with a ``seed``
    column (replicate seeds), mean, std and 95% CI over the seeds (``seeds_aggregate``)."""
    if "seed" in stacked:
        stacked = seeds_aggregate(stacked)
    rows = stacked[stacked["method"] == method]
    cols = ["task", "setting", "n_seeds", "auc", "recall", "seconds", "auc_mean", "auc_std", "auc_ci_low",
            "auc_ci_high", "recall_mean", "recall_std", "recall_ci_low", "recall_ci_high", "lora_r"]
    return rows[[c for c in cols if c in rows]].reset_index(drop=True)


def read_run_tables(run_dir: Path, seeds: Sequence[int] | None) -> pd.DataFrame:
    """A run's identification table; with replicate ``seeds``, every seed's table with a ``seed`` column."""
    if not seeds:
        return pd.read_csv(run_dir / "tables" / "identification.csv")
    return pd.concat([pd.read_csv(run_dir / f"seed{s}" / "tables" / "identification.csv").assign(seed=int(s))
                      for s in seeds], ignore_index=True)


def grid_figure(table: pd.DataFrame, method: str, title: str, out: Path) -> None:
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


def run_grid(profiles: Sequence[str], grid: str, results_dir: str = "results", cores: int = 2,
             only: Sequence[str] | None = None, snakemake_args: Sequence[str] = (), dry_run: bool = False,
             share: bool | None = None, snakefile: str | None = None, workflow_dir: str | Path = ".") -> pd.DataFrame:
    """One Snakemake run per grid setting, then the identification tables stacked with a ``setting`` column.

    Setting ``s`` runs as ``<run>-s`` (``<run>`` from the profiles) with ``--configfile <profiles> <overlay>``
    and the target ``identification``. Grids that only change ``methods``/``evaluate`` reuse the first
    setting's data, adapter and gradients, and the scores of the methods no setting changes (hard links),
    so only the changed methods are rescored. Written to ``<results_dir>/grids/``: the overlays
    (``<tag>/<s>.yaml``), the stacked tables (``<tag>.csv``; per seed with ``seeds``, plus
    ``<tag>_seeds_aggregate.csv``) and, for the grid's method, the paper layout (``<tag>_<method>.csv``, over
    seeds with ``seeds``) and a figure (``<tag>_<method>.png``, error bars: std over seeds with ``seeds``). ``workflow_dir`` holds the Snakefile and
    config.yaml.
    """
    import yaml

    root = Path(workflow_dir).resolve()
    name, settings, method = _load_grid(grid)
    unknown = sorted(set(only or ()) - set(settings))
    if unknown:
        raise ConfigError("--only", f"unknown setting {unknown[0]!r}; the grid has {list(settings)}")
    profiles = [str(Path(p).resolve()) for p in profiles]
    base = merged_profiles(profiles, root)
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
            tables.append(read_run_tables(results / run, base.get("seeds")).assign(setting=setting))
    if not tables:
        return pd.DataFrame()
    combined = pd.concat(tables, ignore_index=True)
    combined = combined[["setting"] + [c for c in combined if c != "setting"]]
    combined.to_csv(out_dir.with_suffix(".csv"), index=False)
    if "seed" in combined:
        seeds_aggregate(combined).to_csv(out_dir.parent / f"{tag}_seeds_aggregate.csv", index=False)
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


def merged_profiles(profiles: Sequence[str], workflow_dir: str | Path = ".") -> dict:
    """``<workflow_dir>/config.yaml`` with the profiles merged on top, as Snakemake's ``--configfile`` does."""
    from inflbench.config import load_config_file, profile_config

    overlays: dict = {}
    for path in profiles:
        overlays = _merge(overlays, load_config_file(path))
    default = load_config_file(Path(workflow_dir) / "config.yaml")
    return profile_config(_merge(default, overlays), overlays)  # standalone profiles: overlays only


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


def main(argv: list[str] | None = None, workflow_dir: str | Path = ".") -> None:
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
                         share=False if args.no_share else None, snakefile=args.snakefile,
                         workflow_dir=workflow_dir)
    except InputError as exc:
        sys.exit(f"inflbench: invalid input: {exc}")
    except subprocess.CalledProcessError as exc:
        sys.exit(f"inflbench: a grid run failed (snakemake exit status {exc.returncode}); see its output above")
    if len(table):
        method = _load_grid(grid)[2]
        shown = grid_table(table, method) if method and method in set(table["method"]) else table
        cols = [c for c in ("task", "setting", "method", "auc", "recall", "seconds") if c in shown]
        print(shown[cols].to_string(index=False))
