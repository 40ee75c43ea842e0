"""Tables over replicate seeds: every seed re-draws the data sample, the label flips, the fine-tune and the
scores, so the spread over seeds is the run-to-run noise a reader must compare differences against.

* ``aggregate`` -- per (task, method): number of seeds, mean, std (ddof 1) and the t-based 95% CI of each metric;
* ``paired_tests`` -- per task and pair of methods, on the per-seed values of one metric: mean difference,
  paired t-test and Wilcoxon signed-rank p-values, share of seeds the first method wins;
* ``stage_seeds_tables`` -- the three tables and a figure (mean with 95% CI bars and the per-seed values).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from inflbench.artifacts import write_table

KEYS = ["task", "method"]


def per_seed_frame(tables: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """The per-seed tables stacked, with the seed as first column."""
    return pd.concat([t.assign(seed=int(s)) for s, t in tables.items()], ignore_index=True)[
        ["seed"] + [c for c in next(iter(tables.values())).columns if c != "seed"]]


def t_interval(values: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, std, low, high) of the two-sided 95% t interval of the mean; NaN spread below two values."""
    from scipy import stats

    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def aggregate(frame: pd.DataFrame, metrics: list[str], keys: list[str] = KEYS) -> pd.DataFrame:
    """One row per ``keys`` group (in first-seen order): n_seeds and ``<metric>_{mean,std,ci_low,ci_high}``."""
    rows = []
    for key, group in frame.groupby(keys, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)), n_seeds=int(group["seed"].nunique()))
        for m in metrics:
            values = pd.to_numeric(group[m], errors="coerce").to_numpy(float)
            row.update(zip([f"{m}_mean", f"{m}_std", f"{m}_ci_low", f"{m}_ci_high"], t_interval(values)))
        rows.append(row)
    return pd.DataFrame(rows)


def paired_tests(frame: pd.DataFrame, metric: str, item: str = "method", by: str = "task") -> pd.DataFrame:
    """Per ``by`` value and pair (a, b) of ``item`` values: the per-seed differences a - b of ``metric``."""
    from scipy import stats

    rows = []
    for where, group in frame.groupby(by, sort=False):
        wide = group.pivot_table(index="seed", columns=item, values=metric, sort=False)
        for a, b in itertools.combinations(list(dict.fromkeys(group[item])), 2):
            diff = (wide[a] - wide[b]).dropna().to_numpy(float)
            n = len(diff)
            p_t = p_w = math.nan
            if n >= 2 and np.ptp(diff) > 0:
                p_t = float(stats.ttest_rel(wide.loc[:, a].dropna(), wide.loc[:, b].dropna()).pvalue)
            if n >= 1 and np.any(diff != 0):
                p_w = float(stats.wilcoxon(diff).pvalue)
            rows.append({by: where, f"{item}_a": a, f"{item}_b": b, "metric": metric, "n_seeds": n,
                         "mean_diff": float(diff.mean()) if n else math.nan,
                         "std_diff": float(diff.std(ddof=1)) if n >= 2 else math.nan,
                         "p_paired_t": p_t, "p_wilcoxon": p_w,
                         "wins_a": float((diff > 0).mean()) if n else math.nan})
    return pd.DataFrame(rows)


def seeds_figure(per_seed: pd.DataFrame, agg: pd.DataFrame, metric: str, out: str | Path) -> None:
    """Per task: mean of ``metric`` per method with 95% CI bars and the per-seed values as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(agg["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(1.2 + 0.7 * agg["method"].nunique() * len(tasks), 3.6),
                             squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = agg[agg["task"] == task].reset_index(drop=True)
        mean = rows[f"{metric}_mean"].to_numpy(float)
        err = np.nan_to_num(np.vstack([mean - rows[f"{metric}_ci_low"], rows[f"{metric}_ci_high"] - mean]))
        ax.errorbar(range(len(rows)), mean, yerr=err, fmt="o", color="black", capsize=4, label="mean, 95% CI")
        for k, method in enumerate(rows["method"]):
            values = per_seed[(per_seed["task"] == task) & (per_seed["method"] == method)][metric]
            ax.scatter(np.full(len(values), k + 0.15), values, s=12, alpha=0.6, color="tab:blue",
                       label="seeds" if k == 0 else None)
        ax.set_xticks(range(len(rows)), rows["method"], rotation=45, ha="right", fontsize=8)
        ax.set(title=task, ylabel=metric)
        ax.legend(fontsize=7)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def stage_seeds_tables(inputs: dict, outputs: dict, params: dict) -> dict[str, pd.DataFrame]:
    """inputs tables (one per seed of params seeds); params metrics, paired_metric -> outputs per_seed,
    aggregate, paired, figure."""
    return write_seeds_tables({s: pd.read_csv(p) for s, p in zip(params["seeds"], inputs["tables"])}, outputs, params)


def write_seeds_tables(tables: dict[int, pd.DataFrame], outputs: dict, params: dict) -> dict[str, pd.DataFrame]:
    """The per-seed tables (columns task, method and the metrics) -> outputs per_seed, aggregate, paired, figure."""
    seeds, metrics, paired = list(tables), list(params["metrics"]), params["paired_metric"]
    frame = per_seed_frame(tables)
    metrics = [m for m in metrics if m in frame]
    agg = aggregate(frame, metrics).sort_values(["task", f"{paired}_mean"], ascending=[True, False], kind="stable")
    rank = {m: k for k, m in enumerate(agg["method"].drop_duplicates())}  # best first: method_a leads its pairs
    frame = frame.sort_values(["seed", "task"], kind="stable")
    frame = frame.iloc[np.argsort(frame["method"].map(rank).to_numpy(), kind="stable")]
    tables = {"per_seed": frame.sort_values(["seed", "task"], kind="stable"), "aggregate": agg,
              "paired": paired_tests(frame, paired)}
    provenance = {"seeds": list(seeds), "metrics": metrics, "paired_metric": paired}
    for name, table in tables.items():
        write_table(table, outputs[name], provenance)
    seeds_figure(frame, tables["aggregate"], paired, outputs["figure"])
    return tables


def markdown(agg: pd.DataFrame, metrics: list[str]) -> str:
    """The aggregate table as Markdown: ``mean ± std [95% CI]`` per metric."""
    head = ["task", "method", "seeds"] + metrics
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in agg.iterrows():
        cells = [f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f} [{r[f'{m}_ci_low']:.3f}, {r[f'{m}_ci_high']:.3f}]"
                 if math.isfinite(r[f"{m}_mean"]) else "–" for m in metrics]
        names = [str(r["task"]), str(r["method"]).replace("|", "\\|"), str(r["n_seeds"])]  # a cell's own pipes
        lines.append("| " + " | ".join(names + cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m inflbench.replicates <aggregate.csv> [metric ...]
    import sys

    print(markdown(pd.read_csv(sys.argv[1]), sys.argv[2:] or ["auc"]))
