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
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/prepare_data.py"


rule finetune:
    """LoRA fine-tuning; keeps the checkpoint with the lowest validation loss."""
    input:
        unpack(lambda w: split_inputs(w.task)),
    output:
        adapter=R.adapter(task="{task}"),
        curve=report(
            R.curve(task="{task}"),
            caption="../reports/training_curve.rst",
            category="Fine-tuning",
            labels={"task": "{task}", "table": "training curve"},
        ),
        predictions=R.val_predictions(task="{task}"),
    params:
        model=CFG["model"],
        train=CFG["train"],
        seed=seed_of,
        device=CFG["device"],
    log:
        R.log(stage="finetune", name="{task}"),
    threads: MAX_THREADS
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/finetune.py"


rule gradients:
    """Per-sample gradients of every trainable block (batched hooks), stored per split."""
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
    threads: MAX_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/gradients.py"


rule scores:
    """Influence of every training sample on every target sample (val or test), per block, for one method."""
    input:
        train=R.gradients(task="{task}", split="train"),
        target=R.gradients(task="{task}", split=TARGET_SPLIT),
    output:
        scores=R.scores(task="{task}", method="{method}"),
    params:
        method_params=lambda w: CFG["methods"][w.method],
        seed=seed_of,
    log:
        R.log(stage="scores", name="{task}_{method}"),
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
    log:
        R.log(stage="scores", name="{task}_{method}"),
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
