"""Stages of the synthetic study (rules/synthetic.smk) and its targets on the run's ``Layout``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from inflbench.paths import Layout

#: Wildcard constraints of the per-cell rule.
WILDCARD_CONSTRAINTS = {"distribution": r"[a-z0-9_]+", "d": r"\d+", "n": r"\d+", "seed": r"\d+"}
FIGURE_FIG1 = "fig1_schulz_lissa_datainf"
FIGURE_TIMING = "timing"
TABLE_TIMING = "table10_timing"  # Table 10 layout: seconds (mean +- std over seeds), rows = d, columns = solvers
TABLE_ERROR = "table9_error"  # Table 9 layout: errors at the table iteration


def cell_name(distribution="{distribution}", d="{d}", n="{n}", seed="{seed}") -> str:
    """Log name of one cell (the cell's sub-path)."""
    return f"{distribution}/d{d}_n{n}_seed{seed}"


def _cells(cfg: dict):
    return [dict(distribution=dist, d=d, n=n, seed=s) for dist in cfg["distributions"] for d in cfg["dims"]
            for n in cfg["n_samples"] for s in cfg["seeds"]]


def cell_files(P: Layout, cfg: dict, kind: str = "synthetic_cell") -> list[str]:
    """Every cell's CSV (``synthetic_cell``) or JSON meta (``synthetic_cell_meta``)."""
    return [P(kind, **c) for c in _cells(cfg)]


def figure_files(P: Layout, cfg: dict) -> list[str]:
    return [P.synthetic_figure(figure=FIGURE_FIG1), P.synthetic_figure(figure=FIGURE_TIMING),
            *(P.synthetic_figure(figure=f"convergence_{dist}") for dist in cfg["distributions"])]


def targets(P: Layout, cfg: dict) -> list[str]:
    """Everything the ``synthetic`` target rule asks for."""
    return [P.synthetic_convergence(), P.synthetic_cells(), *figure_files(P, cfg),
            P.synthetic_table(table=TABLE_TIMING, ext="md"), P.synthetic_table(table=TABLE_TIMING, ext="csv"),
            P.synthetic_table(table=TABLE_ERROR, ext="md"), P.synthetic_table(table=TABLE_ERROR, ext="csv"),
            P.synthetic_summary()]


def stage_cell(inputs: dict, outputs: dict, params: dict) -> None:
    """Every configured solver on one cell; params settings, distribution, d, n, seed -> outputs csv, meta."""
    from inflbench.studies.synthetic.runner import run_cell

    table, meta = run_cell(params["settings"], params["distribution"], int(params["d"]), int(params["n"]),
                           int(params["seed"]), log=lambda msg: print(msg, flush=True))
    table.to_csv(outputs["csv"], index=False)
    Path(outputs["meta"]).write_text(json.dumps(meta, indent=1))


def stage_collect(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs cells, metas -> outputs convergence (tidy), cells (one row per cell)."""
    from inflbench.studies.synthetic.analysis import collect

    conv, cells = collect(list(inputs["cells"]), list(inputs["metas"]))
    conv.to_csv(outputs["convergence"], index=False)
    cells.to_csv(outputs["cells"], index=False)
    print(f"{len(cells)} cells, {len(conv)} rows")


def stage_figures(inputs: dict, outputs: dict, params: dict) -> None:
    """Fig. 1 layout, one Figs. 12-16-layout figure per distribution, and the timing figure."""
    from inflbench.studies.synthetic import analysis, plots

    cfg = params["cfg"]
    conv = pd.read_csv(inputs["convergence"])
    plots.figure1(conv, cfg, outputs["fig1"])
    for dist, out in zip(cfg["distributions"], outputs["distributions"]):
        plots.distribution_figure(conv, cfg, dist, out)
    plots.timing_figure(analysis.table_long(conv, cfg), cfg, outputs["timing"])
    print(f"wrote {2 + len(cfg['distributions'])} figures")


def stage_tables(inputs: dict, outputs: dict, params: dict) -> None:
    """Table 10-layout timing table and Table 9-layout error table (markdown + tidy CSV)."""
    from inflbench.studies.synthetic import analysis

    cfg = params["cfg"]
    long = analysis.table_long(pd.read_csv(inputs["convergence"]), cfg)
    Path(outputs["timing_md"]).write_text(analysis.timing_table(long, cfg))
    long[long["metric"] == "seconds"].to_csv(outputs["timing_csv"], index=False)
    Path(outputs["error_md"]).write_text(analysis.error_table(long, cfg))
    long[long["metric"] != "seconds"].to_csv(outputs["error_csv"], index=False)
    print(f"{len(long)} table entries")


def stage_summary(inputs: dict, outputs: dict, params: dict) -> None:
    """The generated markdown summary (agreement with the papers, from the numbers)."""
    from inflbench.studies.synthetic import summary

    tables = Path(inputs["timing"]).read_text() + "\n" + Path(inputs["error"]).read_text()
    text = summary.summary_markdown(pd.read_csv(inputs["convergence"]), pd.read_csv(inputs["cells"]),
                                    params["cfg"], tables)
    Path(outputs["summary"]).write_text(text)
    print(text.split("## Run status")[0])
