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
        mem_mb=lambda w: scaled_mb(RES.train_mem_mb(grad_shape(), CFG["model"], CFG["device"])),
        runtime=lambda w: scaled_min(RES.train_runtime(grad_shape(), sum(CFG["data"]["sizes"].values()),
                                                    CFG["train"]["epochs"], CFG["device"], MAX_THREADS)),
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/finetune.py"
