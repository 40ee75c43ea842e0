"""Where the synthetic study writes, relative to the run's results root (``RESULTS`` in the Snakefile).

Every path of the study is built here, so rules, scripts and tests agree. Functions called without the
cell arguments return Snakemake patterns with ``{distribution}``, ``{d}``, ``{n}``, ``{seed}`` wildcards.
"""

from __future__ import annotations

from pathlib import PurePosixPath

#: Wildcard constraints for the per-cell rule.
WILDCARD_CONSTRAINTS = {"distribution": r"[a-z0-9_]+", "d": r"\d+", "n": r"\d+", "seed": r"\d+"}


def root(results: str) -> str:
    return str(PurePosixPath(results) / "synthetic")


def _cell_stem(distribution="{distribution}", d="{d}", n="{n}", seed="{seed}") -> str:
    return f"{distribution}/d{d}_n{n}_seed{seed}"


def cell_csv(results: str, distribution="{distribution}", d="{d}", n="{n}", seed="{seed}") -> str:
    return f"{root(results)}/cells/{_cell_stem(distribution, d, n, seed)}.csv"


def cell_meta(results: str, distribution="{distribution}", d="{d}", n="{n}", seed="{seed}") -> str:
    return f"{root(results)}/cells/{_cell_stem(distribution, d, n, seed)}.json"


def cell_log(results: str, distribution="{distribution}", d="{d}", n="{n}", seed="{seed}") -> str:
    return f"{root(results)}/logs/cells/{_cell_stem(distribution, d, n, seed)}.log"


def log(results: str, stage: str) -> str:
    return f"{root(results)}/logs/{stage}.log"


def convergence_csv(results: str) -> str:
    """Tidy table: distribution, d, N, seed, solver, iteration, error, seconds, fro_error, rel_error."""
    return f"{root(results)}/convergence.csv"


def cells_csv(results: str) -> str:
    """One row per cell: spectrum, reference norm, set-up times."""
    return f"{root(results)}/cells.csv"


def figure_fig1(results: str) -> str:
    return f"{root(results)}/figures/fig1_schulz_lissa_datainf.png"


def figure_distribution(results: str, distribution: str) -> str:
    return f"{root(results)}/figures/convergence_{distribution}.png"


def figure_timing(results: str) -> str:
    return f"{root(results)}/figures/timing.png"


def table_timing(results: str, ext: str = "md") -> str:
    """Table 10 layout: seconds (mean +- std over seeds), rows = d, columns = solvers."""
    return f"{root(results)}/tables/table10_timing.{ext}"


def table_error(results: str, ext: str = "md") -> str:
    """Table 9 layout: errors at the table iteration, rows = d, columns = solvers."""
    return f"{root(results)}/tables/table9_error.{ext}"


def summary_md(results: str) -> str:
    return f"{root(results)}/summary.md"


def all_cell_csvs(results: str, cfg: dict) -> list[str]:
    return [cell_csv(results, dist, d, n, s) for dist in cfg["distributions"] for d in cfg["dims"]
            for n in cfg["n_samples"] for s in cfg["seeds"]]


def all_cell_metas(results: str, cfg: dict) -> list[str]:
    return [p[: -len(".csv")] + ".json" for p in all_cell_csvs(results, cfg)]


def figure_files(results: str, cfg: dict) -> list[str]:
    return [figure_fig1(results), figure_timing(results),
            *(figure_distribution(results, dist) for dist in cfg["distributions"])]


def targets(results: str, cfg: dict) -> list[str]:
    """Everything the ``synthetic`` target rule asks for."""
    return [convergence_csv(results), cells_csv(results), *figure_files(results, cfg),
            table_timing(results, "md"), table_timing(results, "csv"), table_error(results, "md"),
            table_error(results, "csv"), summary_md(results)]
