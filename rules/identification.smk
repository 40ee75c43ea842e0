# Influential-data identification (identification.enabled; RRInf §4.2, Table 2): class-detection AUC and
# recall of every method's train-vs-test influence scores, per test point, summarised per task and method.
# With this study on, the scores rule compares train with test. Target `identification`: only this study
# (no synthetic study), e.g.
#   snakemake --cores 2 identification --configfile configs/diffusion.yaml

IDENTIFICATION_TARGETS = (
    per_seed(html_of(R.identification_table())) + per_seed(R.identification_figure(task="{task}"), task=TASKS)
    + ([P.seeds_table(study="identification", table=t) for t in SEED_TABLES] if REPLICATED else [])
    + TOPK_TARGETS
    if ON["identification"]
    else []
)


rule identification:
    """Identification table and figures only (the default target also runs the synthetic study)."""
    input:
        IDENTIFICATION_TARGETS,


rule identification_metrics:
    """Per-test-point class-detection AUC and recall@s of one method's (n_train, n_test) scores."""
    input:
        scores=R.scores(task="{task}", method="{method}"),
        train=R.split(task="{task}", split="train"),
        test=R.split(task="{task}", split="test"),
    output:
        points=R.identification(task="{task}", method="{method}"),
        summary=R.identification_summary(task="{task}", method="{method}"),
    params:
        model=CFG["model"],
    log:
        R.log(stage="identification_metrics", name="{task}_{method}"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/identification_metrics.py"


rule identification_table:
    """Mean ± std of AUC and recall over test points, and scoring runtime, per task and method (RRInf Table 2)."""
    input:
        summaries=expand(
            R.identification_summary(task="{task}", method="{method}"),
            task=TASKS,
            method=METHODS,
            allow_missing=True,
        ),
    output:
        table=R.identification_table(),
        html=report(
            html_of(R.identification_table()),
            caption="../reports/identification_table.rst",
            category="Influential data",
            labels={"table": "class detection per method"},
        ),
    params:
        config=CFG,
    log:
        R.log(stage="identification_table", name="all"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/identification_table.py"


rule identification_figure:
    """Distribution over test points of AUC and recall for every method, one figure per task."""
    input:
        points=expand(R.identification(task="{{task}}", method="{method}"), method=METHODS, allow_missing=True),
    output:
        figure=report(
            R.identification_figure(task="{task}"),
            caption="../reports/identification_figure.rst",
            category="Influential data",
            labels={"task": "{task}", "figure": "class detection per test point"},
        ),
    params:
        methods=METHODS,
    log:
        R.log(stage="identification_figure", name="{task}"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/identification_figure.py"


rule identification_seeds:
    """Over the replicate seeds: per-seed rows, mean / std / 95% CI of the per-seed mean AUC and recall per task
    and method, paired tests between methods, and a figure of the spread."""
    input:
        tables=per_seed(R.identification_table()),
    output:
        **{t: P.seeds_table(study="identification", table=t) for t in SEED_TABLES},
        figure=P.seeds_figure(study="identification"),
    params:
        seeds=SEEDS,
        metrics=["auc_mean", "recall_mean", "seconds"],
        paired_metric="auc_mean",
    log:
        P.log(stage="identification_seeds", name="all"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/seeds_tables.py"
