# Mislabeled-data detection (detection.enabled): how early each method's scores rank the flipped labels.


DETECTION_TARGETS = (
    [html_of(P.leaderboard())] + per_seed(html_of(R.detection_table())) + per_seed(R.detection_figure(task="{task}"), task=TASKS)
    + ([P.seeds_table(study="detection", table=t) for t in SEED_TABLES] + [P.seeds_figure(study="detection")]
       if REPLICATED else [])
    + TOPK_TARGETS
    if ON["detection"]
    else []
)


rule detection:
    """Target: the detection table and figures."""
    input:
        DETECTION_TARGETS,


rule detection_metrics:
    """AUC and detection-rate curve of one method's scores against the flip mask."""
    input:
        scores=R.scores(task="{task}", method="{method}"),
        train=R.split(task="{task}", split="train"),
    output:
        curve=R.detection(task="{task}", method="{method}"),
        summary=R.detection_summary(task="{task}", method="{method}"),
    params:
        points=CFG["evaluate"]["curve_points"],
    log:
        R.log(stage="detection_metrics", name="{task}_{method}"),
    priority: DETECTION_PRIORITY
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/detection_metrics.py"


rule detection_table:
    """AUC, detection rate at 20%, runtime and peak memory per task and method."""
    input:
        summaries=expand(R.detection_summary(task="{task}", method="{method}"), task=TASKS, method=METHODS, allow_missing=True),
    output:
        table=R.detection_table(),
        html=report(
            html_of(R.detection_table()),
            caption="../reports/detection_table.rst",
            category="Mislabeled-data detection",
            labels={"table": "AUC and runtime per method"},
        ),
    params:
        config={k: CFG[k] for k in ("seed", "data", "model", "train", "gradients", "methods")},
    log:
        R.log(stage="detection_table", name="all"),
    priority: DETECTION_PRIORITY
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/detection_table.py"


rule leaderboard:
    """Methods ranked by their detection AUC over tasks, with runtime and memory (the report's first table)."""
    input:
        tables=per_seed(R.detection_table()),
    output:
        table=P.leaderboard(),
        html=report(
            html_of(P.leaderboard()),
            caption="../reports/leaderboard.rst",
            category="1. Leaderboard",
            labels={"table": "leaderboard"},
        ),
    log:
        P.log(stage="leaderboard", name="all"),
    priority: DETECTION_PRIORITY
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/leaderboard.py"


rule detection_figure:
    """Detection-rate curves of all methods for one task."""
    input:
        curves=expand(R.detection(task="{{task}}", method="{method}"), method=METHODS, allow_missing=True),
    output:
        figure=report(
            R.detection_figure(task="{task}"),
            caption="../reports/detection_figure.rst",
            category="Mislabeled-data detection",
            labels={"task": "{task}", "figure": "detection curves"},
        ),
    params:
        methods=METHODS,
    log:
        R.log(stage="detection_figure", name="{task}"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/detection_figure.py"


rule detection_seeds:
    """Over the replicate seeds: per-seed rows, mean / std / 95% CI per task and method, paired tests between
    methods, and a figure of the spread."""
    input:
        tables=per_seed(R.detection_table()),
    output:
        **{t: P.seeds_table(study="detection", table=t) for t in SEED_TABLES},
        **{
            f"{t}_html": report(
                html_of(P.seeds_table(study="detection", table=t)),
                caption="../reports/seeds_tables.rst",
                category="Mislabeled-data detection",
                labels={"table": f"over seeds: {t}"},
            )
            for t in SEED_TABLES
        },
        figure=report(
            P.seeds_figure(study="detection"),
            caption="../reports/seeds_figure.rst",
            category="Mislabeled-data detection",
            labels={"figure": "over seeds"},
        ),
    params:
        seeds=SEEDS,
        metrics=["auc", "detection_at_20pct", "detection_at_40pct", "seconds"],
        paired_metric="auc",
    log:
        P.log(stage="detection_seeds", name="all"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/seeds_tables.py"
