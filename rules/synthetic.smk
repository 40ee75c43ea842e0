# Synthetic inverse-HVP convergence and matrix-inversion study (synthetic.enabled; HyperINF §4, App. H–I;
# RRInf eq. 5). One job per (distribution, d, N, seed) cell; the target rule `synthetic` builds CSVs,
# figures, tables, summary. Paths from the run's Layout P, config from CFG["synthetic"] (defaults filled).
from inflbench.studies.synthetic import resources as SYN_RESOURCES
from inflbench.studies.synthetic import stages as SYN
from inflbench.studies.synthetic.config import cell_params as syn_cell_params

SYN_CFG = CFG["synthetic"]
SYN_TARGETS = SYN.targets(P, SYN_CFG) if ON["synthetic"] else []


rule synthetic:
    """Target: the whole synthetic study (tidy CSV, figures, Table 9/10-layout tables, summary)."""
    input:
        SYN.targets(P, SYN_CFG),


rule synthetic_cell:
    """All configured solvers on one cell; per-iteration errors and solver wall time."""
    input:
        order=ancient(per_seed(R.detection_table())) if DETECTION_FIRST else [],  # existence only
    output:
        csv=P.synthetic_cell(distribution="{distribution}", d="{d}", n="{n}", seed="{seed}"),
        meta=P.synthetic_cell_meta(distribution="{distribution}", d="{d}", n="{n}", seed="{seed}"),
    params:
        settings=syn_cell_params(SYN_CFG),
    log:
        P.log(stage="synthetic_cell", name=SYN.cell_name()),
    wildcard_constraints:
        distribution="|".join(SYN_CFG["distributions"]),
        d=SYN.WILDCARD_CONSTRAINTS["d"],
        n=SYN.WILDCARD_CONSTRAINTS["n"],
        seed=SYN.WILDCARD_CONSTRAINTS["seed"],
    threads: SYN_CFG["threads"]
    resources:
        mem_mb=lambda wc: SYN_RESOURCES.mem_mb(int(wc.d), int(wc.n)),
        runtime=lambda wc, threads: SYN_RESOURCES.runtime_min(
            int(wc.d), int(wc.n), SYN_CFG["iterations"], threads
        ),
    conda:
        ENV
    script:
        "../scripts/synthetic_cell.py"


rule synthetic_collect:
    """Concatenate the cells into the tidy convergence table and the per-cell table."""
    input:
        cells=SYN.cell_files(P, SYN_CFG),
        metas=SYN.cell_files(P, SYN_CFG, "synthetic_cell_meta"),
    output:
        convergence=P.synthetic_convergence(),
        cells=P.synthetic_cells(),
    log:
        P.log(stage="synthetic_collect", name="all"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/synthetic_collect.py"


rule synthetic_figures:
    """Fig. 1 layout, one Figs. 12–16-layout figure per distribution, and the timing figure."""
    input:
        convergence=P.synthetic_convergence(),
    output:
        fig1=report(
            P.synthetic_figure(figure=SYN.FIGURE_FIG1),
            caption="../reports/synthetic_fig1.rst",
            category="Synthetic study",
            subcategory="Figures",
        ),
        timing=report(
            P.synthetic_figure(figure=SYN.FIGURE_TIMING),
            caption="../reports/synthetic_timing.rst",
            category="Synthetic study",
            subcategory="Figures",
        ),
        distributions=[
            report(
                P.synthetic_figure(figure=f"convergence_{dist}"),
                caption="../reports/synthetic_convergence.rst",
                category="Synthetic study",
                subcategory="Figures",
            )
            for dist in SYN_CFG["distributions"]
        ],
    params:
        cfg=SYN_CFG,
    log:
        P.log(stage="synthetic_figures", name="all"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/synthetic_figures.py"


rule synthetic_tables:
    """Time (Table 10 layout) and error (Table 9 layout) tables, markdown and tidy CSV."""
    input:
        convergence=P.synthetic_convergence(),
    output:
        timing_md=P.synthetic_table(table=SYN.TABLE_TIMING, ext="md"),
        timing_html=report(
            P.synthetic_table(table=SYN.TABLE_TIMING, ext="html"),
            caption="../reports/synthetic_tables.rst",
            category="Synthetic study",
            subcategory="Tables",
        ),
        timing_csv=P.synthetic_table(table=SYN.TABLE_TIMING, ext="csv"),
        error_md=P.synthetic_table(table=SYN.TABLE_ERROR, ext="md"),
        error_html=report(
            P.synthetic_table(table=SYN.TABLE_ERROR, ext="html"),
            caption="../reports/synthetic_tables.rst",
            category="Synthetic study",
            subcategory="Tables",
        ),
        error_csv=P.synthetic_table(table=SYN.TABLE_ERROR, ext="csv"),
    params:
        cfg=SYN_CFG,
    log:
        P.log(stage="synthetic_tables", name="all"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/synthetic_tables.py"


rule synthetic_summary:
    """Generated markdown: where our numbers agree and disagree with HyperINF (and RRInf)."""
    input:
        convergence=P.synthetic_convergence(),
        cells=P.synthetic_cells(),
        timing=P.synthetic_table(table=SYN.TABLE_TIMING, ext="md"),
        error=P.synthetic_table(table=SYN.TABLE_ERROR, ext="md"),
    output:
        summary=P.synthetic_summary(),
        html=report(
            html_of(P.synthetic_summary()),
            caption="../reports/synthetic_summary.rst",
            category="Synthetic study",
            subcategory="Summary",
        ),
    params:
        cfg=SYN_CFG,
    log:
        P.log(stage="synthetic_summary", name="all"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/synthetic_summary.py"
