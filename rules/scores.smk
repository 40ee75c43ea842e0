SHARDS = CFG["scores"]["shards"]
SHARDED_METHODS = [m for m in GRADIENT_METHODS if SHARDS > 1 and _separable(m)]
WHOLE_METHODS = [m for m in GRADIENT_METHODS if m not in SHARDED_METHODS]
_STORE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}[CFG["gradients"]["dtype"]]


def _scores_mem(wildcards, shards=1):
    shape = dict(grad_shape())
    shape["d"] = shape["d"] // shards + shape["d_max"] * (shards > 1)
    return scaled_mb(RES.scores_mem_mb(wildcards.method, shape, N_TRAIN, N_TARGET, CFG["scores"]["group_mb"],
                                 _separable(wildcards.method), _STORE_BYTES))


def _scores_runtime(wildcards, shards=1):
    shape = dict(grad_shape())
    shape["d"] = shape["d"] // shards + shape["d_max"] * (shards > 1)
    return scaled_min(RES.scores_runtime(wildcards.method, shape, N_TRAIN, N_TARGET, MAX_THREADS, SCORES_DEVICE))


rule scores:
    """Influence of every training sample on every target sample (val or test), per block, for one method;
    streamed block group by block group (inflbench.scoring)."""
    input:
        train=P.gradients(task="{task}", split="train"),
        test=P.gradients(task="{task}", split=TARGET_SPLIT),
    output:
        P.scores(task="{task}", method="{method}"),
    params:
        method_params=lambda w: CFG["methods"][w.method],
        scores={**CFG["scores"], "device": SCORES_DEVICE},
    log:
        P.log(stage="scores", name="{task}_{method}"),
    wildcard_constraints:
        method="|".join(WHOLE_METHODS) or "^$",
    threads: MAX_THREADS
    resources:
        mem_mb=_scores_mem,
        runtime=_scores_runtime,
        gpu=SCORES_GPU,
    conda:
        ENV
    script:
        "../scripts/scores.py"


rule scores_shard:
    """One of scores.shards block ranges of a block-separable method."""
    input:
        train=P.gradients(task="{task}", split="train"),
        test=P.gradients(task="{task}", split=TARGET_SPLIT),
    output:
        temp(P.score_shard(task="{task}", method="{method}", shard="{shard}")),
    params:
        method_params=lambda w: CFG["methods"][w.method],
        scores={**CFG["scores"], "device": SCORES_DEVICE},
        shards=SHARDS,
    log:
        P.log(stage="scores", name="{task}_{method}_{shard}"),
    wildcard_constraints:
        method="|".join(SHARDED_METHODS) or "^$",
        shard=r"\d+",
    threads: MAX_THREADS
    resources:
        mem_mb=lambda w: _scores_mem(w, SHARDS),
        runtime=lambda w: _scores_runtime(w, SHARDS),
        gpu=SCORES_GPU,
    conda:
        ENV
    script:
        "../scripts/scores.py"


rule scores_merge:
    """The score file of a sharded method: its shards' blocks, totals summed in float64."""
    input:
        shards=lambda w: [P.score_shard(task=w.task, method=w.method, shard=i) for i in range(SHARDS)],
    output:
        P.scores(task="{task}", method="{method}"),
    log:
        P.log(stage="scores", name="{task}_{method}"),
    wildcard_constraints:
        method="|".join(SHARDED_METHODS) or "^$",
    threads: 1
    resources:
        mem_mb=lambda w: scaled_mb(RES.BASE_MB + 3 * 8 * N_TRAIN * N_TARGET // 2**20),
        runtime=lambda w: scaled_min(10),
    conda:
        ENV
    script:
        "../scripts/scores_merge.py"


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
        mem_mb=lambda w: scaled_mb(RES.train_mem_mb(grad_shape(), CFG["model"], CFG["device"])
                             + 8 * N_TRAIN * N_TARGET * 3 // 2**20),
        runtime=lambda w: scaled_min(RES.gradients_runtime(grad_shape(), 3 * (N_TRAIN + N_TARGET), CFG["device"],
                                                        MAX_THREADS)),
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/model_scores.py"
