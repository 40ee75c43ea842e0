# Core DAG of the model-based studies: data splits, LoRA fine-tuning, per-sample gradients, influence scores.


rule prepare_data:
    """Sample stratified train/val/test splits and flip a fraction of the training labels."""
    output:
        train=R.split(task="{task}", split="train"),
        val=R.split(task="{task}", split="val"),
        test=R.split(task="{task}", split="test"),
        sizes=R.sizes(task="{task}"),
    params:
        data=CFG["data"],
        seed=seed_of,
    log:
        R.log(stage="prepare_data", name="{task}"),
    priority: DETECTION_PRIORITY
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/prepare_data.py"


rule pretrain:
    """Full-parameter pretraining of the tiny decoder on generated text of the task families (its own seed and
    random stream; prompts of the run's splits left out); one per run, loaded by every job that builds the model."""
    input:
        splits=[rep_layout(s if REPLICATED else None).split(task=t, split=x)
                for s in SEEDS for t in TASKS for x in ("train", "val", "test")],
    output:
        weights=P.pretrained(),
        curve=P.pretrain_curve(),
    params:
        model=CFG["model"],
    log:
        P.log(stage="pretrain", name="model"),
    priority: DETECTION_PRIORITY
    threads: MAX_THREADS
    resources:
        mem_mb=3000,
        runtime=lambda w: scaled_min(30),
    conda:
        ENV
    script:
        "../scripts/pretrain.py"


rule finetune:
    """LoRA fine-tuning; keeps the checkpoint with the lowest validation loss."""
    input:
        unpack(lambda w: split_inputs(w.task)),
        pretrained=PRETRAINED,
    output:
        adapter=R.adapter(task="{task}"),
        curve=R.curve(task="{task}"),
        curve_html=report(
            html_of(R.curve(task="{task}")),
            caption="../reports/training_curve.rst",
            category="Fine-tuning",
            labels={"task": "{task}", "table": "training curve"},
        ),
        predictions=R.val_predictions(task="{task}"),
        peft=directory(R.peft_adapter(task="{task}")),
    params:
        model=CFG["model"],
        train=CFG["train"],
        seed=seed_of,
        device=CFG["device"],
    log:
        R.log(stage="finetune", name="{task}"),
    priority: DETECTION_PRIORITY
    threads: MAX_THREADS
    resources:
        mem_mb=lambda w: scaled_mb(RES.train_mem_mb(grad_shape(), CFG["model"], CFG["device"])),
        runtime=lambda w: scaled_min(RES.train_runtime(grad_shape(), sum(CFG["data"]["sizes"].values()),
                                                       CFG["train"]["epochs"], CFG["device"], MAX_THREADS)),
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/finetune.py"


GRAD_CHUNKS = CFG["gradients"]["chunks"]
_GRAD_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}[CFG["gradients"]["dtype"]]


rule gradients_chunk:
    """Per-sample gradients of the selected blocks (gradients.blocks) for one sample chunk of a split,
    streamed batch by batch into a store (gradients.chunks > 1; rule gradients merges the chunks)."""
    input:
        unpack(lambda w: split_inputs(w.task)),
        adapter=R.adapter(task="{task}"),
    output:
        grads=temp(R.gradient_chunk(task="{task}", split="{split}", chunk="{chunk}")),
        index=temp(R.gradient_chunk_index(task="{task}", split="{split}", chunk="{chunk}")),
    params:
        model=CFG["model"],
        gradients=CFG["gradients"],
        seed=seed_of,
        device=CFG["device"],
        chunks=GRAD_CHUNKS,
    log:
        R.log(stage="gradients", name="{task}_{split}_{chunk}"),
    priority: DETECTION_PRIORITY
    wildcard_constraints:
        chunk=r"\d+",
    threads: MAX_THREADS
    resources:
        mem_mb=_grad_mem,
        runtime=lambda w: _grad_runtime(w, GRAD_CHUNKS),
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/gradients.py"


if GRAD_CHUNKS == 1:

    rule gradients:
        """Per-sample gradients of the selected blocks (gradients.blocks, batched hooks), streamed batch by
        batch into one store per split."""
        input:
            unpack(lambda w: split_inputs(w.task)),
            adapter=R.adapter(task="{task}"),
        output:
            grads=R.gradients(task="{task}", split="{split}"),
            index=R.gradient_index(task="{task}", split="{split}"),
        params:
            model=CFG["model"],
            gradients=CFG["gradients"],
            seed=seed_of,
            device=CFG["device"],
        log:
            R.log(stage="gradients", name="{task}_{split}"),
        priority: DETECTION_PRIORITY
        threads: MAX_THREADS
        resources:
            mem_mb=_grad_mem,
            runtime=_grad_runtime,
            gpu=GPU,
        conda:
            ENV
        script:
            "../scripts/gradients.py"

else:

    rule gradients:
        """The store of a split from its gradients.chunks sample-chunk stores (copied row chunk by row chunk)."""
        input:
            chunks=lambda w: [R.gradient_chunk(task=w.task, split=w.split, chunk=i) for i in range(GRAD_CHUNKS)],
            indexes=lambda w: [R.gradient_chunk_index(task=w.task, split=w.split, chunk=i)
                               for i in range(GRAD_CHUNKS)],
        output:
            grads=R.gradients(task="{task}", split="{split}"),
            index=R.gradient_index(task="{task}", split="{split}"),
        log:
            R.log(stage="gradients", name="{task}_{split}"),
        priority: DETECTION_PRIORITY
        threads: 1
        resources:
            mem_mb=1500,
            runtime=lambda w: scaled_min(10 + split_size(w.split) // 2000),
        conda:
            ENV
        script:
            "../scripts/gradients_merge.py"


SHARDS = CFG["scores"]["shards"]
SHARDED_METHODS = [m for m in GRADIENT_METHODS if SHARDS > 1 and _separable(BASE_METHOD[m])]
WHOLE_METHODS = [m for m in GRADIENT_METHODS if m not in SHARDED_METHODS]
_STORE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}[CFG["gradients"]["dtype"]]
SCORES_PARAMS = {**CFG["scores"], "device": SCORES_DEVICE}


rule block_stats:
    """Grams and norms of the train gradients, computed once and shared by the curvature methods."""
    input:
        train=R.gradients(task="{task}", split="train"),
    output:
        stats=R.block_stats(task="{task}"),
    params:
        device=SCORES_DEVICE,
    log:
        R.log(stage="block_stats", name="{task}"),
    priority: DETECTION_PRIORITY
    threads: MAX_THREADS
    resources:
        mem_mb=lambda w: scaled_mb(RES.block_stats_mem_mb(grad_shape(), N_TRAIN)),
        runtime=lambda w: scaled_min(RES.block_stats_runtime(grad_shape(), N_TRAIN, MAX_THREADS)),
        gpu=SCORES_GPU,
    conda:
        ENV
    script:
        "../scripts/block_stats.py"


rule scores:
    """Influence of every training sample on every target sample (val or test), per block, for one method;
    streamed block group by block group (inflbench.scoring)."""
    input:
        train=R.gradients(task="{task}", split="train"),
        target=R.gradients(task="{task}", split=TARGET_SPLIT),
        stats=lambda w: R.block_stats(task=w.task) if get_method(BASE_METHOD[w.method]).block_stats else [],
    output:
        scores=R.scores(task="{task}", method="{method}"),
    params:
        method_params=lambda w: CFG["methods"][w.method],
        scores=SCORES_PARAMS,
        seed=seed_of,
    log:
        R.log(stage="scores", name="{task}_{method}"),
    priority: DETECTION_PRIORITY
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
        train=R.gradients(task="{task}", split="train"),
        target=R.gradients(task="{task}", split=TARGET_SPLIT),
        stats=lambda w: R.block_stats(task=w.task) if get_method(BASE_METHOD[w.method]).block_stats else [],
    output:
        scores=temp(R.score_shard(task="{task}", method="{method}", shard="{shard}")),
    params:
        method_params=lambda w: CFG["methods"][w.method],
        scores=SCORES_PARAMS,
        seed=seed_of,
        shards=SHARDS,
    log:
        R.log(stage="scores", name="{task}_{method}_{shard}"),
    priority: DETECTION_PRIORITY
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
        shards=lambda w: [R.score_shard(task=w.task, method=w.method, shard=i) for i in range(SHARDS)],
    output:
        scores=R.scores(task="{task}", method="{method}"),
    log:
        R.log(stage="scores", name="{task}_{method}"),
    priority: DETECTION_PRIORITY
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
        adapter=R.adapter(task="{task}"),
    output:
        scores=R.scores(task="{task}", method="{method}"),
    params:
        method_params=lambda w: CFG["methods"][w.method],
        model=CFG["model"],
        seed=seed_of,
        device=CFG["device"],
        batch_size=CFG["gradients"]["batch_size"],
        target_split=TARGET_SPLIT,
        scores=SCORES_PARAMS,
    log:
        R.log(stage="scores", name="{task}_{method}"),
    priority: DETECTION_PRIORITY
    wildcard_constraints:
        method="|".join(MODEL_METHODS) or "^$",
    threads: MAX_THREADS
    resources:
        mem_mb=lambda w: scaled_mb(RES.model_scores_mem_mb(grad_shape(), CFG["model"], CFG["device"], N_TRAIN,
                                                           N_TARGET, CFG["gradients"]["batch_size"])),
        runtime=lambda w: scaled_min(RES.gradients_runtime(grad_shape(), 3 * (N_TRAIN + N_TARGET), CFG["device"],
                                                           MAX_THREADS)),
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/model_scores.py"


rule topk:
    """The k most harmful and most helpful training examples of one method, with text and labels."""
    input:
        scores=R.scores(task="{task}", method="{method}"),
        train=R.split(task="{task}", split="train"),
    output:
        table=R.topk(task="{task}", method="{method}"),
        html=report(
            html_of(R.topk(task="{task}", method="{method}")),
            caption="../reports/topk.rst",
            category="2. Flagged training examples",
            subcategory="{task}",
            labels={"task": "{task}", "method": "{method}"},
        ),
    params:
        k=CFG["evaluate"]["top_k"],
    log:
        R.log(stage="topk", name="{task}_{method}"),
    priority: DETECTION_PRIORITY
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/topk.py"
