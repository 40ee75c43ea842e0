# Layer-choice study (layers.enabled; layer-choice paper) and retraining evaluations (RRInf App. C,
# HyperINF §5.2 / App. E.2); needs the detection study. docs/layers.md. Every retraining is its own job
# (no checkpoint saved).
import re

from inflbench.studies.layer_choice import resolved_groups
from inflbench.studies.layer_choice.stages import ENSEMBLE
from inflbench.studies.layer_choice.stages import selectors as layer_selectors

LAYERS = CFG.get("layers") or {}
LAYERS_ON = ON["layer_choice"]
LAYER_TABLES = ["runs", "ranking", "winrate", "pareto", "wilcoxon", "layer_ranks", "correlation",
                "selection", "logo", "cancellation", "ndr"]
LAYER_FIGURES = ["accuracy", "ndr_blocks", "aggregation_change", "noise_deciles"]
if LAYERS_ON:
    LAYER_GROUPS = resolved_groups(LAYERS)
    LAYER_METHODS = list(LAYERS["methods"])
    ENSEMBLES = LAYERS.get("ensembles") or {}
    ENSEMBLE_METHODS = sorted({m for e in ENSEMBLES.values() for m in e["methods"]})
    LAYER_SCORERS = LAYER_METHODS + ([ENSEMBLE] if ENSEMBLES else [])  # layer score tables
    SELECTORS = layer_selectors(LAYERS)
    LAYER_RUNS = [
        R.layer_retrain(task=t, selector=s, seed=seed)
        for t in TASKS
        for s, spec in SELECTORS.items()
        for seed in spec["seeds"]
    ]
    LAYER_TARGETS = per_seed(R.layer_table(table="{table}"), table=LAYER_TABLES) + per_seed(
        R.layer_figure(figure="{figure}"), figure=LAYER_FIGURES
    )
    if REPLICATED:
        LAYER_TARGETS += [P.seeds_table(study="layers", table=t) for t in SEED_TABLES] + [P.seeds_figure(study="layers")]
else:
    LAYER_GROUPS, LAYER_METHODS, SELECTORS, LAYER_RUNS, LAYER_TARGETS = {}, [], {}, [], []
    ENSEMBLE_METHODS, LAYER_SCORERS = [], []

# Retrainings bundled into cluster jobs (resources.retrain_group_size = K): each run waits for the previous run
# of its bundle, and the bundle is one Snakemake group, so it is submitted as one job running K retrainings in
# sequence (one start-up, resources of one run, runtimes added).
RETRAIN_K = CFG["resources"]["retrain_group_size"]
RUN_INDEX = {path: i for i, path in enumerate(LAYER_RUNS)}


rule layers_aggregate:
    """Group x aggregation scores of one method, NDR@p, NDR-AUC, NDR curve, noise deciles, per-block NDR."""
    input:
        scores=R.scores(task="{task}", method="{method}"),
        train=R.split(task="{task}", split="train"),
        predictions=R.val_predictions(task="{task}"),
    output:
        scores=R.layer_scores(task="{task}", method="{method}"),
        ndr=R.layer_ndr(task="{task}", method="{method}"),
        curve=R.layer_ndr_curve(task="{task}", method="{method}"),
        deciles=R.layer_deciles(task="{task}", method="{method}"),
        blocks=R.layer_ndr_blocks(task="{task}", method="{method}"),
    params:
        groups=LAYER_GROUPS,
        layers=LAYERS,
    log:
        R.log(stage="layers_aggregate", name="{task}_{method}"),
    wildcard_constraints:
        method="|".join(LAYER_METHODS) or "^$",
    threads: 1
    resources:
        mem_mb=lambda w: scaled_mb(RES.layers_mem_mb("aggregate", grad_shape(), N_TRAIN, N_TARGET)),
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/layers_aggregate.py"


rule layers_ensemble:
    """Method x group ensembles (layers.ensembles): stacked columns, each aggregation, NDR, curves, deciles."""
    input:
        scores=[R.scores(task="{task}", method=m) for m in ENSEMBLE_METHODS],
        train=R.split(task="{task}", split="train"),
        predictions=R.val_predictions(task="{task}"),
    output:
        scores=R.layer_scores(task="{task}", method=ENSEMBLE),
        ndr=R.layer_ndr(task="{task}", method=ENSEMBLE),
        curve=R.layer_ndr_curve(task="{task}", method=ENSEMBLE),
        deciles=R.layer_deciles(task="{task}", method=ENSEMBLE),
    params:
        methods=ENSEMBLE_METHODS,
        groups=LAYER_GROUPS,
        layers=LAYERS,
    log:
        R.log(stage="layers_ensemble", name="{task}"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/layers_ensemble.py"


rule layers_cancellation:
    """Cancellation effect C(W) per parameter, summarised per block and group (layer-choice paper Table 1)."""
    input:
        grads=R.gradients(task="{task}", split="train"),
    output:
        cancellation=R.layer_cancellation(task="{task}"),
    params:
        groups=LAYER_GROUPS,
        extreme=LAYERS.get("extreme_cancellation", 1000.0),
    log:
        R.log(stage="layers_cancellation", name="{task}"),
    threads: 1
    resources:
        mem_mb=lambda w: scaled_mb(RES.layers_mem_mb("cancellation", grad_shape(), N_TRAIN, N_TARGET)),
        runtime=lambda w: scaled_min(10 + 4 * N_TRAIN * grad_shape()["d"] // 10**11),
    conda:
        ENV
    script:
        "../scripts/layers_cancellation.py"


rule layers_mask:
    """Kept training ids of one selector (filter / baseline / selection / LOGO group) and seed."""
    input:
        unpack(
            lambda w: (
                {"scores": R.layer_scores(task=w.task, method=SELECTORS[w.selector]["method"])}
                if "method" in SELECTORS[w.selector]
                else {}
            )
        ),
        train=R.split(task="{task}", split="train"),
        order=ancient(R.detection_table()) if DETECTION_FIRST else [],  # existence only
    output:
        mask=R.layer_mask(task="{task}", selector="{selector}", seed="{seed}"),
    params:
        spec=lambda w: SELECTORS[w.selector],
    localrule: True
    log:
        R.log(stage="layers_mask", name="{task}_{selector}_{seed}"),
    wildcard_constraints:
        selector="|".join(re.escape(s) for s in SELECTORS) or "^$",
        seed=r"\d+",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/layers_mask.py"


rule layers_retrain:
    """Retrain from the scored checkpoint's initialisation on the kept ids; records the best test accuracy."""
    input:
        unpack(lambda w: split_inputs(w.task)),
        keep=R.layer_mask(task="{task}", selector="{selector}", seed="{seed}"),
        previous=retrain_previous,
    output:
        run=R.layer_retrain(task="{task}", selector="{selector}", seed="{seed}"),
    params:
        model=CFG["model"],
        train=CFG["train"],
        init_seed=seed_of,
        device=CFG["device"],
        spec=lambda w: SELECTORS[w.selector],
    log:
        R.log(stage="layers_retrain", name="{task}_{selector}_{seed}"),
    wildcard_constraints:
        selector="|".join(re.escape(s) for s in SELECTORS) or "^$",
        seed=r"\d+",
    group:
        retrain_group
    threads: LAYERS.get("retrain_threads", 1)
    resources:
        mem_mb=lambda w: LAYERS.get("retrain_mem_mb") or scaled_mb(RES.train_mem_mb(grad_shape(), CFG["model"], CFG["device"])),
        runtime=lambda w: LAYERS.get("retrain_runtime") or scaled_min(RES.train_runtime(
            grad_shape(), sum(CFG["data"]["sizes"].values()), CFG["train"]["epochs"], CFG["device"],
            LAYERS.get("retrain_threads", 1))),
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/layers_retrain.py"


rule layers_tables:
    """Rankings, win rates, Pareto front, Wilcoxon, Spearman, selection and LOGO tables (layer-choice paper Tables 1-6)."""
    input:
        runs=LAYER_RUNS,
        ndr=expand(R.layer_ndr(task="{task}", method="{method}"), task=TASKS, method=LAYER_SCORERS, allow_missing=True),
        cancellation=expand(R.layer_cancellation(task="{task}"), task=TASKS, allow_missing=True),
        scores=expand(R.layer_scores(task="{task}", method="{method}"), task=TASKS, method=LAYER_SCORERS, allow_missing=True),
    output:
        **{t: R.layer_table(table=t) for t in LAYER_TABLES},
        **{
            f"{t}_html": report(
                html_of(R.layer_table(table=t)),
                caption=f"../reports/layers_{t}.rst",
                category="Layer analysis",
                labels={"table": t},
            )
            for t in LAYER_TABLES
        },
    params:
        tasks=TASKS,
        methods=LAYER_SCORERS,
        layers=LAYERS,
    log:
        R.log(stage="layers_tables", name="all"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/layers_tables.py"


rule layers_seeds:
    """Over the replicate seeds: post-filter accuracy (mean over each seed's retrainings), NDR and NDR-AUC per task
    and filter configuration with mean / std / 95% CI, paired tests between configurations, and a figure."""
    input:
        runs=per_seed(R.layer_table(table="runs")),
        ndr=per_seed(R.layer_table(table="ndr")),
    output:
        **{t: P.seeds_table(study="layers", table=t) for t in SEED_TABLES},
        **{
            f"{t}_html": report(
                html_of(P.seeds_table(study="layers", table=t)),
                caption="../reports/seeds_tables.rst",
                category="Layer analysis",
                labels={"table": f"over seeds: {t}"},
            )
            for t in SEED_TABLES
        },
        figure=report(
            P.seeds_figure(study="layers"),
            caption="../reports/seeds_figure.rst",
            category="Layer analysis",
            labels={"figure": "over seeds"},
        ),
    params:
        seeds=SEEDS,
        metrics=["accuracy", "ndr", "ndr_auc"],
        paired_metric="accuracy",
    log:
        P.log(stage="layers_seeds", name="all"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/layers_seeds.py"


rule layers_figures:
    """Accuracy distributions, NDR by module and layer, Rank/Vote vs mean, noise decile histograms."""
    input:
        runs=R.layer_table(table="runs"),
        blocks=expand(R.layer_ndr_blocks(task="{task}", method="{method}"), task=TASKS, method=LAYER_METHODS, allow_missing=True),
        deciles=expand(R.layer_deciles(task="{task}", method="{method}"), task=TASKS, method=LAYER_SCORERS, allow_missing=True),
    output:
        **{
            f: report(
                R.layer_figure(figure=f),
                caption=f"../reports/layers_{f}.rst",
                category="Layer analysis",
                labels={"figure": f},
            )
            for f in LAYER_FIGURES
        },
    log:
        R.log(stage="layers_figures", name="all"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/layers_figures.py"
