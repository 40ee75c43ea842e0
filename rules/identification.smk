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
        curve=R.curve(task="{task}"),
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
        **{
            f"{t}_html": report(
                html_of(P.seeds_table(study="identification", table=t)),
                caption="../reports/seeds_tables.rst",
                category="Influential data",
                labels={"table": f"over seeds: {t}"},
            )
            for t in SEED_TABLES
        },
        figure=report(
            P.seeds_figure(study="identification"),
            caption="../reports/seeds_figure.rst",
            category="Influential data",
            labels={"figure": "over seeds"},
        ),
    params:
        seeds=SEEDS,
        metrics=["auc_mean", "recall_mean", "seconds", "model_test_exact_match", "model_test_token_accuracy"],
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


# ---- ablation grid (config `grid`; RRInf Tables 6-8, Figure 1): target `grid`. Each setting is a value of the
# wildcard {setting}; its jobs run the core rules with the setting's config (GRID_CFG) and take every stage
# whose config it leaves unchanged from the run (setting_layout). Outputs: G = <run>[/seed<N>]/grids/<grid>/<setting>/.
if GRID:

    rule grid:
        """The grid's stacked identification tables, the paper layout of its method and its figure."""
        input:
            P.grid_table(grid=GRID.name),
            P.grid_figure(grid=GRID.name, method=GRID.method or "none"),

    rule grid_table:
        """Identification tables of every setting (and replicate) stacked; the grid method's rows per (task,
        setting) in the paper layout (mean ± std over seeds when replicated) and their figure."""
        input:
            summaries=[path for path, _, _ in grid_summaries()],
        output:
            table=P.grid_table(grid=GRID.name),
            paper=P.grid_paper_table(grid=GRID.name, method=GRID.method or "none"),
            figure=P.grid_figure(grid=GRID.name, method=GRID.method or "none"),
        params:
            rows=[{"rep": rep, "setting": s} for _, rep, s in grid_summaries()],
            grid=GRID.name,
            method=GRID.method,
            replicated=REPLICATED,
            config=CFG,
        log:
            P.log(stage="grid_table", name=GRID.name),
        threads: 1
        resources:
            mem_mb=1000,
            runtime=5,
        conda:
            ENV
        script:
            "../scripts/grid_table.py"

    use rule prepare_data as grid_prepare_data with:
        output:
            train=G.split(task="{task}", split="train"),
            val=G.split(task="{task}", split="val"),
            test=G.split(task="{task}", split="test"),
            sizes=G.sizes(task="{task}"),
        params:
            data=setting_cfg("data"),
            seed=seed_of,
        log:
            R.log(stage="prepare_data", name="{setting}_{task}"),

    use rule finetune as grid_finetune with:
        input:
            unpack(lambda w: split_inputs(w.task, setting_layout(w, "data"))),
            pretrained=PRETRAINED,
        output:
            adapter=G.adapter(task="{task}"),
            curve=G.curve(task="{task}"),
            curve_html=html_of(G.curve(task="{task}")),
            predictions=G.val_predictions(task="{task}"),
            peft=directory(G.peft_adapter(task="{task}")),
        params:
            model=setting_cfg("model"),
            train=setting_cfg("train"),
            seed=seed_of,
            device=CFG["device"],
        log:
            R.log(stage="finetune", name="{setting}_{task}"),

    use rule gradients_chunk as grid_gradients with:
        input:
            unpack(lambda w: split_inputs(w.task, setting_layout(w, "data"))),
            adapter=lambda w: setting_layout(w, "model").adapter(task=w.task),
        output:
            grads=G.gradients(task="{task}", split="{split}"),
            index=G.gradient_index(task="{task}", split="{split}"),
        params:
            model=setting_cfg("model"),
            gradients=setting_cfg("gradients"),
            seed=seed_of,
            device=CFG["device"],
            chunks=1,
        log:
            R.log(stage="gradients", name="{setting}_{task}_{split}"),

    use rule block_stats as grid_block_stats with:
        input:
            train=G.gradients(task="{task}", split="train"),
        output:
            stats=G.block_stats(task="{task}"),
        log:
            R.log(stage="block_stats", name="{setting}_{task}"),

    use rule scores as grid_scores with:
        input:
            train=lambda w: setting_layout(w, "gradients").gradients(task=w.task, split="train"),
            target=lambda w: setting_layout(w, "gradients").gradients(task=w.task, split=TARGET_SPLIT),
            stats=lambda w: setting_layout(w, "gradients").block_stats(task=w.task)
            if get_method(BASE_METHOD[w.method]).block_stats
            else [],
        output:
            scores=G.scores(task="{task}", method="{method}"),
        params:
            method_params=lambda w: GRID_CFG[w.setting]["methods"][w.method],
            scores=lambda w: {**GRID_CFG[w.setting]["scores"], "device": SCORES_DEVICE},
            seed=seed_of,
        log:
            R.log(stage="scores", name="{setting}_{task}_{method}"),
        wildcard_constraints:
            method="|".join(GRID_GRADIENT_METHODS) or "^$",

    use rule model_scores as grid_model_scores with:
        input:
            unpack(lambda w: split_inputs(w.task, setting_layout(w, "data"))),
            adapter=lambda w: setting_layout(w, "model").adapter(task=w.task),
        output:
            scores=G.scores(task="{task}", method="{method}"),
        params:
            method_params=lambda w: GRID_CFG[w.setting]["methods"][w.method],
            model=setting_cfg("model"),
            seed=seed_of,
            device=CFG["device"],
            batch_size=lambda w: GRID_CFG[w.setting]["gradients"]["batch_size"],
            target_split=TARGET_SPLIT,
            scores=lambda w: {**GRID_CFG[w.setting]["scores"], "device": SCORES_DEVICE},
        log:
            R.log(stage="scores", name="{setting}_{task}_{method}"),
        wildcard_constraints:
            method="|".join(GRID_MODEL_METHODS) or "^$",

    use rule identification_metrics as grid_identification_metrics with:
        input:
            scores=G.scores(task="{task}", method="{method}"),
            train=lambda w: setting_layout(w, "data").split(task=w.task, split="train"),
            test=lambda w: setting_layout(w, "data").split(task=w.task, split="test"),
            curve=lambda w: setting_layout(w, "model").curve(task=w.task),
        output:
            points=G.identification(task="{task}", method="{method}"),
            summary=G.identification_summary(task="{task}", method="{method}"),
        params:
            model=setting_cfg("model"),
        log:
            R.log(stage="identification_metrics", name="{setting}_{task}_{method}"),
