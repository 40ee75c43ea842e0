# Core DAG of the model-based studies: data splits, LoRA fine-tuning, per-sample gradients, influence scores.


rule prepare_data:
    """Sample stratified train/val/test splits and flip a fraction of the training labels."""
    output:
        train=P.split(task="{task}", split="train"),
        val=P.split(task="{task}", split="val"),
        test=P.split(task="{task}", split="test"),
    params:
        data=CFG["data"],
        seed=CFG["seed"],
    log:
        P.log(stage="prepare_data", name="{task}"),
    priority: DETECTION_PRIORITY
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
        adapter=P.adapter(task="{task}"),
        curve=P.curve(task="{task}"),
        curve_html=report(
            html_of(P.curve(task="{task}")),
            caption="../reports/training_curve.rst",
            category="Fine-tuning",
            labels={"task": "{task}", "table": "training curve"},
        ),
        predictions=P.val_predictions(task="{task}"),
        peft=directory(P.peft_adapter(task="{task}")),
    params:
        model=CFG["model"],
        train=CFG["train"],
        seed=CFG["seed"],
        device=CFG["device"],
    log:
        P.log(stage="finetune", name="{task}"),
    priority: DETECTION_PRIORITY
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
        adapter=P.adapter(task="{task}"),
    output:
        grads=P.gradients(task="{task}", split="{split}"),
        index=P.gradient_index(task="{task}", split="{split}"),
    params:
        model=CFG["model"],
        gradients=CFG["gradients"],
        seed=CFG["seed"],
        device=CFG["device"],
    log:
        P.log(stage="gradients", name="{task}_{split}"),
    priority: DETECTION_PRIORITY
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
        train=P.gradients(task="{task}", split="train"),
        target=P.gradients(task="{task}", split=TARGET_SPLIT),
    output:
        scores=P.scores(task="{task}", method="{method}"),
    params:
        method_params=lambda w: CFG["methods"][w.method],
    log:
        P.log(stage="scores", name="{task}_{method}"),
    priority: DETECTION_PRIORITY
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
        scores=P.scores(task="{task}", method="{method}"),
    params:
        method_params=lambda w: CFG["methods"][w.method],
        model=CFG["model"],
        seed=CFG["seed"],
        device=CFG["device"],
        batch_size=CFG["gradients"]["batch_size"],
        target_split=TARGET_SPLIT,
    log:
        P.log(stage="scores", name="{task}_{method}"),
    priority: DETECTION_PRIORITY
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


rule topk:
    """The k most harmful and most helpful training examples of one method, with text and labels."""
    input:
        scores=P.scores(task="{task}", method="{method}"),
        train=P.split(task="{task}", split="train"),
    output:
        table=P.topk(task="{task}", method="{method}"),
        html=report(
            html_of(P.topk(task="{task}", method="{method}")),
            caption="../reports/topk.rst",
            category="2. Flagged training examples",
            subcategory="{task}",
            labels={"task": "{task}", "method": "{method}"},
        ),
    params:
        k=CFG["evaluate"]["top_k"],
    log:
        P.log(stage="topk", name="{task}_{method}"),
    priority: DETECTION_PRIORITY
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/topk.py"
