"""Figures in the paper's panel layout: log error vs iteration, one panel per (d, N)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from inflbench.figures import pyplot, save
from inflbench.solvers.table import entry
from inflbench.studies.synthetic.config import DISTRIBUTIONS

plt = pyplot()

#: Solid lines; the remaining solvers are dashed so neighbouring colours stay distinguishable.
SOLID = ("schulz_paper", "schulz_safe", "lissa", "neumann", "cg", "gmres", "rrinf_sgd")
#: Figure 1 of HyperINF compares exactly these three.
FIG1_SOLVERS = ("schulz_paper", "lissa", "datainf")
def _label(solver: str) -> str:
    e = entry(solver)
    return e.label if e is not None else solver


def _colors(solvers: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab20")
    return {s: cmap(i % 20) for i, s in enumerate(solvers)}


def convergence_grid(conv: pd.DataFrame, distribution: str, solvers: list[str], out: str, title: str) -> None:
    """Rows = N, columns = d; median error over seeds with a min–max band; closed forms as dashed lines."""
    df = conv[(conv["distribution"] == distribution) & conv["solver"].isin(solvers)]
    dims = sorted(df["d"].unique())
    ns = sorted(df["N"].unique())
    solvers = [s for s in solvers if s in set(df["solver"])]
    colors = _colors(solvers)
    legend_in = 2.9  # inches kept on the right for the legend
    width = 3.1 * len(dims) + 0.6 + legend_in
    fig, axes = plt.subplots(len(ns), len(dims), figsize=(width, 2.5 * len(ns) + 0.8), squeeze=False, sharex=True)
    iters = int(df["iteration"].max()) if len(df) else 1
    for i, n in enumerate(ns):
        for j, d in enumerate(dims):
            ax = axes[i][j]
            cell = df[(df["N"] == n) & (df["d"] == d)]
            for s in solvers:
                g = cell[cell["solver"] == s]
                if g.empty:
                    continue
                err = g.pivot_table(index="iteration", columns="seed", values="error", aggfunc="first", dropna=False)
                vals = err.to_numpy(dtype=float)
                vals = np.where(np.isfinite(vals) & (vals > 0), vals, np.nan)
                if (err.index == 0).all():  # closed form: a horizontal line
                    ax.axhline(np.nanmedian(vals), color=colors[s], ls=":", lw=1.6, label=_label(s))
                    continue
                with warnings.catch_warnings():  # all-NaN rows after divergence are expected
                    warnings.simplefilter("ignore", RuntimeWarning)
                    med = np.nanmedian(vals, axis=1) if vals.size else vals
                    lo, hi = np.nanmin(vals, axis=1), np.nanmax(vals, axis=1)
                ax.plot(err.index, med, color=colors[s], lw=1.4, label=_label(s),
                        ls="-" if s in SOLID else (0, (4, 1.5)))
                if vals.shape[1] > 1:
                    ax.fill_between(err.index, lo, hi, color=colors[s], alpha=0.15, lw=0)
            ax.set_yscale("log")
            first = cell[cell["iteration"] == 1]["error"].replace([np.inf, -np.inf], np.nan).dropna()
            if len(first):  # keep exploding curves from flattening the informative range
                top = ax.get_ylim()[1]
                ax.set_ylim(top=min(top, float(first.median()) * 1e12))
            ax.set_xlim(1, iters)
            ax.set_title(f"d = {d}, N = {n}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(True, which="major", alpha=0.3)
            if j == 0:
                ax.set_ylabel("‖M⁻¹v − x̂‖₂", fontsize=8)
            if i == len(ns) - 1:
                ax.set_xlabel("iteration", fontsize=8)
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.suptitle(title, fontsize=11)
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - legend_in / width, 0.95))
    save(fig, out)


def figure1(conv: pd.DataFrame, cfg: dict, out: str) -> None:
    dist = "normal_0_1" if "normal_0_1" in cfg["distributions"] else cfg["distributions"][0]
    solvers = [s for s in FIG1_SOLVERS if s in cfg["solvers"]] or list(cfg["solvers"])
    convergence_grid(conv, dist, solvers, out,
                     f"Fig. 1 layout: {', '.join(_label(s) for s in solvers)} — entries {DISTRIBUTIONS[dist][3]}")


def distribution_figure(conv: pd.DataFrame, cfg: dict, distribution: str, out: str) -> None:
    convergence_grid(conv, distribution, list(cfg["solvers"]), out,
                     f"Figs. 12–16 layout: entries {DISTRIBUTIONS[distribution][3]}, damping {cfg['damping']}")


def timing_figure(long: pd.DataFrame, cfg: dict, out: str) -> None:
    """Seconds vs d on the table slice (HyperINF Fig. 11 layout)."""
    sub = long[long["metric"] == "seconds"]
    solvers = [s for s in cfg["solvers"] if s in set(sub["solver"])]
    colors = _colors(list(cfg["solvers"]))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for s in solvers:
        g = sub[sub["solver"] == s].sort_values("d")
        ax.errorbar(g["d"], g["mean"], yerr=g["std"], color=colors[s], marker="o", ms=3, lw=1.2, label=_label(s))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("matrix dimension d")
    ax.set_ylabel("seconds")
    t = cfg["table"]
    ax.set_title(f"Time to iteration {t['iteration']} — {DISTRIBUTIONS[t['distribution']][3]}, N = {t['n_samples']}",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    save(fig, out)
