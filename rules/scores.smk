rule block_stats:
    """Grams and norms of the train gradients, computed once and shared by the curvature methods."""
    input:
        P.gradients(task="{task}", split="train"),
    output:
        P.block_stats(task="{task}"),
    log:
        P.log(stage="block_stats", name="{task}"),
    threads: MAX_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/block_stats.py"


rule scores:
    """Influence of every training sample on every target sample (val or test), per block, for one method."""
    input:
        train=P.gradients(task="{task}", split="train"),
        test=P.gradients(task="{task}", split=TARGET_SPLIT),
        stats=lambda w: [P.block_stats(task=w.task)] if get_method(w.method).block_stats else [],
    output:
        P.scores(task="{task}", method="{method}"),
    params:
        method_params=lambda w: CFG["methods"][w.method],
    log:
        P.log(stage="scores", name="{task}_{method}"),
    wildcard_constraints:
        method="|".join(GRADIENT_METHODS) or "^$",
    threads: MAX_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/scores.py"


rule model_scores:
    """Methods that need the model and data rather than stored gradients (EK-FAC via kronfluence)."""
    input:
        unpack(lambda w: split_inputs(w.task)),
        adapter=P.adapter(task="{task}"),
    output:
        P.scores(task="{task}", method="{method}"),
    params:
        method_params=lambda w: CFG["methods"][w.method],
        model=CFG["model"],
        seed=CFG["seed"],
        device=CFG["device"],
        batch_size=CFG["gradients"]["batch_size"],
        target_split=TARGET_SPLIT,
    log:
        P.log(stage="scores", name="{task}_{method}"),
    wildcard_constraints:
        method="|".join(MODEL_METHODS) or "^$",
    threads: MAX_THREADS
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/model_scores.py"
