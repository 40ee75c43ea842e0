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
    threads: MAX_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/gradients.py"
