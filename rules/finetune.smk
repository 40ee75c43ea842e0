rule finetune:
    """LoRA fine-tuning; keeps the checkpoint with the lowest validation loss."""
    input:
        unpack(lambda w: split_inputs(w.task)),
    output:
        adapter=P.adapter(task="{task}"),
        curve=report(
            P.curve(task="{task}"),
            caption="../reports/training_curve.rst",
            category="Fine-tuning",
            labels={"task": "{task}", "table": "training curve"},
        ),
        predictions=P.val_predictions(task="{task}"),
    params:
        model=CFG["model"],
        train=CFG["train"],
        seed=CFG["seed"],
        device=CFG["device"],
    log:
        P.log(stage="finetune", name="{task}"),
    threads: MAX_THREADS
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/finetune.py"
