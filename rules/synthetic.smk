# Synthetic inverse-HVP convergence and matrix-inversion study (HyperINF §4, App. H–I; RRInf eq. 5).
# Needs `config` (raw; uses config["synthetic"]) and `RESULTS` (results root of this run) from the Snakefile.
# One job per (distribution, d, N, seed) cell; the target rule `synthetic` builds CSVs, figures, tables, summary.
from inflbench.synthetic import paths as SYN_PATHS
from inflbench.synthetic import resources as SYN_RESOURCES
from inflbench.synthetic.config import cell_params as syn_cell_params
from inflbench.synthetic.config import validate_config as syn_validate_config

SYN_CFG = syn_validate_config(config.get("synthetic") or {})
SYN_ENV = "../envs/inflbench-cpu.yaml"


rule synthetic:
    """Target: the whole synthetic study (tidy CSV, figures, Table 9/10-layout tables, summary)."""
    input:
        SYN_PATHS.targets(RESULTS, SYN_CFG),


rule synthetic_cell:
    """All configured solvers on one cell; per-iteration errors and solver wall time."""
    output:
        csv=SYN_PATHS.cell_csv(RESULTS),
        meta=SYN_PATHS.cell_meta(RESULTS),
    params:
        settings=syn_cell_params(SYN_CFG),
    log:
        SYN_PATHS.cell_log(RESULTS),
    wildcard_constraints:
        distribution="|".join(SYN_CFG["distributions"]),
        d=SYN_PATHS.WILDCARD_CONSTRAINTS["d"],
        n=SYN_PATHS.WILDCARD_CONSTRAINTS["n"],
        seed=SYN_PATHS.WILDCARD_CONSTRAINTS["seed"],
    threads: SYN_CFG["threads"]
    resources:
        mem_mb=lambda wc: SYN_RESOURCES.mem_mb(int(wc.d), int(wc.n)),
        runtime=lambda wc, threads: SYN_RESOURCES.runtime_min(
            int(wc.d), int(wc.n), SYN_CFG["iterations"], threads
        ),
    conda:
        SYN_ENV
    script:
        "../scripts/synthetic_cell.py"


rule synthetic_collect:
    """Concatenate the cells into the tidy convergence table and the per-cell table."""
    input:
        cells=SYN_PATHS.all_cell_csvs(RESULTS, SYN_CFG),
        metas=SYN_PATHS.all_cell_metas(RESULTS, SYN_CFG),
    output:
        convergence=SYN_PATHS.convergence_csv(RESULTS),
        cells=SYN_PATHS.cells_csv(RESULTS),
    log:
        SYN_PATHS.log(RESULTS, "collect"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        SYN_ENV
    script:
        "../scripts/synthetic_collect.py"


rule synthetic_figures:
    """Fig. 1 layout, one Figs. 12–16-layout figure per distribution, and the timing figure."""
    input:
        convergence=SYN_PATHS.convergence_csv(RESULTS),
    output:
        fig1=report(
            SYN_PATHS.figure_fig1(RESULTS),
            caption="../reports/synthetic_fig1.rst",
            category="Synthetic study",
            subcategory="Figures",
        ),
        timing=report(
            SYN_PATHS.figure_timing(RESULTS),
            caption="../reports/synthetic_timing.rst",
            category="Synthetic study",
            subcategory="Figures",
        ),
        distributions=[
            report(
                SYN_PATHS.figure_distribution(RESULTS, dist),
                caption="../reports/synthetic_convergence.rst",
                category="Synthetic study",
                subcategory="Figures",
            )
            for dist in SYN_CFG["distributions"]
        ],
    params:
        cfg=SYN_CFG,
    log:
        SYN_PATHS.log(RESULTS, "figures"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        SYN_ENV
    script:
        "../scripts/synthetic_figures.py"


rule synthetic_tables:
    """Time (Table 10 layout) and error (Table 9 layout) tables, markdown and tidy CSV."""
    input:
        convergence=SYN_PATHS.convergence_csv(RESULTS),
    output:
        timing_md=report(
            SYN_PATHS.table_timing(RESULTS, "md"),
            caption="../reports/synthetic_tables.rst",
            category="Synthetic study",
            subcategory="Tables",
        ),
        timing_csv=SYN_PATHS.table_timing(RESULTS, "csv"),
        error_md=report(
            SYN_PATHS.table_error(RESULTS, "md"),
            caption="../reports/synthetic_tables.rst",
            category="Synthetic study",
            subcategory="Tables",
        ),
        error_csv=SYN_PATHS.table_error(RESULTS, "csv"),
    params:
        cfg=SYN_CFG,
    log:
        SYN_PATHS.log(RESULTS, "tables"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        SYN_ENV
    script:
        "../scripts/synthetic_tables.py"


rule synthetic_summary:
    """Generated markdown: where our numbers agree and disagree with HyperINF (and RRInf)."""
    input:
        convergence=SYN_PATHS.convergence_csv(RESULTS),
        cells=SYN_PATHS.cells_csv(RESULTS),
        timing=SYN_PATHS.table_timing(RESULTS, "md"),
        error=SYN_PATHS.table_error(RESULTS, "md"),
    output:
        summary=report(
            SYN_PATHS.summary_md(RESULTS),
            caption="../reports/synthetic_summary.rst",
            category="Synthetic study",
            subcategory="Summary",
        ),
    params:
        cfg=SYN_CFG,
    log:
        SYN_PATHS.log(RESULTS, "summary"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        SYN_ENV
    script:
        "../scripts/synthetic_summary.py"
