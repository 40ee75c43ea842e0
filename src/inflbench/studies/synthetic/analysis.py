"""Aggregation of the per-cell results: the tidy table, run classification, the Table 9/10-layout tables
(the generated agreement summary is :mod:`inflbench.studies.synthetic.summary`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from inflbench.studies.synthetic.config import DISTRIBUTIONS, FULL_INVERSE_SOLVERS
from inflbench.studies.synthetic.runner import COLUMNS

KEYS = ["distribution", "d", "N", "seed"]
RUN = [*KEYS, "solver"]

#: Column names of the paper's Tables 9/10 mapped onto our solvers (GE = LU solve, FGE = torch.inverse).
PAPER_NAMES = {"direct": "GE (LU solve)", "cg": "CG", "inverse": "FGE (torch inverse)", "gmres": "GMRES",
               "schulz_paper": "Schulz (X0=c*I)", "schulz_safe": "Schulz (safe X0)", "cholesky": "Cholesky"}


#: HyperINF appendix H (A100 GPU, N = 12800, 20 iterations, 3 seeds): mean seconds (Table 10) and mean
#: Frobenius errors of the inverse (Table 9), by matrix dimension.
PAPER_TABLE10 = {
    16: {"direct": 0.04, "cg": 0.11, "inverse": 0.02, "gmres": 0.41, "schulz": 0.002},
    64: {"direct": 0.31, "cg": 0.43, "inverse": 0.01, "gmres": 2.27, "schulz": 0.0008},
    256: {"direct": 2.55, "cg": 2.37, "inverse": 0.001, "gmres": 12.7, "schulz": 0.002},
    1024: {"direct": 23.7, "cg": 14.6, "inverse": 0.007, "gmres": 77.1, "schulz": 0.002},
    4096: {"direct": 313.8, "cg": 107.9, "inverse": 0.07, "gmres": 581.6, "schulz": 0.001},
}
PAPER_TABLE9 = {
    16: {"cg": 3.5e-10, "inverse": 3.0e-11, "gmres": 1.3e-10, "schulz": 4.2e-11},
    64: {"cg": 9.7e-10, "inverse": 8.7e-11, "gmres": 1.6e-10, "schulz": 1.4e-10},
    256: {"cg": 9.9e-9, "inverse": 3.9e-10, "gmres": 8.9e-10, "schulz": 5.4e-10},
    1024: {"cg": 1.2e-8, "inverse": 2.1e-9, "gmres": 3.7e-9, "schulz": 2.5e-9},
    4096: {"cg": 1.2e-7, "inverse": 2.1e-8, "gmres": 1.5e-7, "schulz": 2.7e-8},
}
#: A100 dense peak throughput (FLOP/s): FP32 and TF32 tensor cores (vendor data sheet figures).
A100_PEAK = {"FP32": 19.5e12, "TF32": 156e12}


# --------------------------------------------------------------------------- collection


def collect(cell_csvs: list[str], cell_metas: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate per-cell CSVs (tidy convergence table) and flatten per-cell JSON metadata."""
    conv = pd.concat([pd.read_csv(p) for p in cell_csvs], ignore_index=True)[COLUMNS]
    rows = []
    for path in cell_metas:
        meta = json.loads(Path(path).read_text())
        row = {k: v for k, v in meta.items() if k != "solvers"}
        for solver, extra in meta["solvers"].items():
            for key, value in extra.items():
                if isinstance(value, (int, float, bool)):
                    row[f"{solver}:{key}"] = value
        rows.append(row)
    cells = pd.DataFrame(rows)
    return conv.sort_values([*RUN, "iteration"], kind="stable").reset_index(drop=True), cells


# --------------------------------------------------------------------------- classification


def classify(conv: pd.DataFrame, rtol: float, at_iteration: int | None = None) -> pd.DataFrame:
    """One row per run (cell x solver) with the final error and a status.

    Iterative solvers: ``diverged`` (a non-finite error, or a final relative error above 1 that is more than
    10x the first one), ``converged`` (final relative error <= rtol), else ``stalled``. Closed-form solvers:
    ``accurate`` / ``inaccurate`` against the same rtol. ``at_iteration`` cuts the curves first.
    """
    df = conv if at_iteration is None else conv[conv["iteration"] <= at_iteration]
    out = []
    for key, g in df.groupby(RUN, sort=False):
        rel = g["rel_error"].to_numpy(dtype=float)
        err = g["error"].to_numpy(dtype=float)
        closed = bool((g["iteration"] == 0).all())
        nonfinite = bool((~np.isfinite(rel)).any())
        final_rel = rel[-1]
        below = np.flatnonzero(np.isfinite(rel) & (rel <= rtol))
        if closed:
            status = "accurate" if final_rel <= rtol else "inaccurate"
        elif nonfinite or (final_rel > 1.0 and final_rel > 10.0 * rel[0]):
            status = "diverged"
        elif final_rel <= rtol:
            status = "converged"
        else:
            status = "stalled"
        out.append({**dict(zip(RUN, key)), "closed_form": closed, "final_error": err[-1], "final_rel": final_rel,
                    "first_rel": rel[0], "min_rel": np.nanmin(np.where(np.isfinite(rel), rel, np.nan))
                    if np.isfinite(rel).any() else math.nan,
                    "iter_to_rtol": int(g["iteration"].to_numpy()[below[0]]) if below.size else None,
                    "nonfinite": nonfinite, "status": status})
    return pd.DataFrame(out)


def status_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """solver x status counts."""
    return runs.pivot_table(index="solver", columns="status", values="seed", aggfunc="count", fill_value=0)


# --------------------------------------------------------------------------- tables (paper layouts)


def at_iteration(conv: pd.DataFrame, iteration: int) -> pd.DataFrame:
    """Rows of iterative solvers at ``iteration`` plus the closed-form rows."""
    return conv[(conv["iteration"] == iteration) | (conv["iteration"] == 0)]


def _mean_std(series: pd.Series) -> tuple[float, float, int]:
    x = series.to_numpy(dtype=float)
    return float(np.mean(x)), float(np.std(x, ddof=1)) if x.size > 1 else 0.0, int(x.size)


def table_long(conv: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Tidy table behind Tables 9/10: (d, solver, metric) -> mean, std, runs, on the configured slice."""
    t = cfg["table"]
    sl = at_iteration(conv, t["iteration"])
    sl = sl[(sl["distribution"] == t["distribution"]) & (sl["N"] == t["n_samples"])]
    rows = []
    for (d, solver), g in sl.groupby(["d", "solver"], sort=True):
        for metric in ("seconds", "error", "fro_error", "rel_error"):
            if g[metric].isna().all():
                continue
            mean, std, n = _mean_std(g[metric])
            rows.append({"distribution": t["distribution"], "N": t["n_samples"], "iteration": t["iteration"],
                         "d": d, "solver": solver, "metric": metric, "mean": mean, "std": std, "runs": n})
    return pd.DataFrame(rows, columns=["distribution", "N", "iteration", "d", "solver", "metric", "mean", "std",
                                       "runs"])


def _solver_order(solvers: list[str]) -> list[str]:
    first = [s for s in PAPER_NAMES if s in solvers]
    return first + [s for s in solvers if s not in first]


def _fmt(mean: float, std: float, runs: int = 2) -> str:
    if not math.isfinite(mean):
        return str(mean)
    big = mean >= 1e-3 or mean == 0
    if runs < 2:
        return f"{mean:.2g}" if big else f"{mean:.1e}"
    return f"{mean:.2g} ± {std:.1g}" if big else f"{mean:.1e} ± {std:.1e}"


def table_markdown(long: pd.DataFrame, metric: str, solvers: list[str], title: str, note: str) -> str:
    """Paper layout: rows = matrix dimension d, one column per solver, cells 'mean ± std'."""
    sub = long[long["metric"] == metric]
    cols = [s for s in _solver_order(solvers) if s in set(sub["solver"])]
    header = "| Matrix dim | " + " | ".join(PAPER_NAMES.get(s, s) for s in cols) + " |"
    lines = [f"### {title}", "", note, "", header, "|" + "---|" * (len(cols) + 1)]
    for d, g in sub.groupby("d", sort=True):
        cells = {r.solver: _fmt(r.mean, r.std, r.runs) for r in g.itertuples()}
        lines.append(f"| {d} | " + " | ".join(cells.get(s, "–") for s in cols) + " |")
    return "\n".join(lines) + "\n"


def solver_rows_markdown(long: pd.DataFrame, metric: str, solvers: list[str], title: str, note: str) -> str:
    """Every solver as a row, one column per d (readable when there are many solvers)."""
    sub = long[long["metric"] == metric]
    dims = sorted(sub["d"].unique())
    lines = [f"### {title}", "", note, "", "| solver | " + " | ".join(f"d = {d}" for d in dims) + " |",
             "|---|" + "---|" * len(dims)]
    for s in _solver_order(solvers):
        g = sub[sub["solver"] == s]
        if g.empty:
            continue
        cells = {r.d: _fmt(r.mean, r.std, r.runs) for r in g.itertuples()}
        lines.append(f"| {PAPER_NAMES.get(s, s)} | " + " | ".join(cells.get(d, "–") for d in dims) + " |")
    return "\n".join(lines) + "\n"


def _slice_note(cfg: dict) -> str:
    t = cfg["table"]
    return (f"{DISTRIBUTIONS[t['distribution']][3]} entries, N = {t['n_samples']}, damping {cfg['damping']}, "
            f"{cfg['dtype']}, mean ± std over {len(cfg['seeds'])} seed(s), iteration {t['iteration']} "
            "(closed forms: one call).")


def paper_comparison_markdown(long: pd.DataFrame, cfg: dict) -> str:
    """Our numbers next to HyperINF's Tables 9/10 for the matrix sizes both grids contain."""
    common = sorted(set(PAPER_TABLE10) & set(long["d"]))
    if not common:
        return ""
    ours = long.set_index(["d", "solver", "metric"])["mean"]
    lines = ["### Side by side with HyperINF Tables 9–10", "",
             "Paper: A100 GPU, N = 12800, N(0, 1) entries, full inverses. Ours: CPU, "
             f"{_slice_note(cfg)} Schulz = our run from the paper's X0 (safe X0 if that is not configured); "
             "errors: paper Frobenius of the inverse, "
             "ours Frobenius where a full inverse exists, else ‖M⁻¹v − x‖₂ (marked v).", "",
             "| d | method | paper time (s) | our time (s) | paper error | our error |", "|---|---|---|---|---|---|"]
    for d in common:
        for key, label, solvers in (("direct", "GE", ["direct"]), ("cg", "CG", ["cg"]),
                                    ("inverse", "FGE", ["inverse"]), ("gmres", "GMRES", ["gmres"]),
                                    ("schulz", "Schulz", ["schulz_paper", "schulz_safe"])):
            present = [s for s in solvers if (d, s, "seconds") in ours.index][:1]
            if not present:
                continue
            t = min(ours[(d, s, "seconds")] for s in present)
            fro = [ours[(d, s, "fro_error")] for s in present if (d, s, "fro_error") in ours.index]
            err = f"{min(fro):.2g}" if fro else f"{min(ours[(d, s, 'error')] for s in present):.2g} (v)"
            paper_err = PAPER_TABLE9[d].get(key)
            lines.append(f"| {d} | {label} | {PAPER_TABLE10[d][key]:g} | {t:.3g} | "
                         f"{'–' if paper_err is None else f'{paper_err:g}'} | {err} |")
    return "\n".join(lines) + "\n"


def timing_table(long: pd.DataFrame, cfg: dict) -> str:
    paper_cols = [s for s in (*PAPER_NAMES, "cholesky") if s in cfg["solvers"]]
    note = ("Wall seconds on CPU, error measurement excluded; " + _slice_note(cfg) +
            " HyperINF's Table 10 times full inverses on an A100 GPU; GE here is an LU solve of M x = v and "
            "GMRES iterations are restart cycles.")
    parts = []
    if paper_cols:
        parts.append(table_markdown(long, "seconds", paper_cols, "Time cost (s) — Table 10 layout", note))
    parts.append(solver_rows_markdown(long, "seconds", cfg["solvers"], "Time cost (s) — all solvers",
                                      "Same slice and measurement as above."))
    side = paper_comparison_markdown(long, cfg)
    if side:
        parts.append(side)
    return "\n".join(parts)


def error_table(long: pd.DataFrame, cfg: dict) -> str:
    fro = [s for s in cfg["solvers"] if s in FULL_INVERSE_SOLVERS]
    paper_cols = [s for s in PAPER_NAMES if s in cfg["solvers"]]
    parts = []
    if fro:
        parts.append(table_markdown(long, "fro_error", fro, "Inverse error ‖M⁻¹ − X‖_F — Table 9 layout",
                                    "Frobenius error of the full inverse against a float64 inverse; "
                                    + _slice_note(cfg)))
    if paper_cols:
        parts.append(table_markdown(long, "error", paper_cols, "Vector error ‖M⁻¹v − x‖₂ — Table 9 layout",
                                    "Error of the inverse-HVP against the float64 direct solve; " + _slice_note(cfg)))
    parts.append(solver_rows_markdown(long, "error", cfg["solvers"], "Vector error ‖M⁻¹v − x‖₂ — all solvers",
                                      "Same slice and measurement as above."))
    return "\n".join(parts)
