rule scores:
    """Influence of every training sample on every target sample (val or test), per block, for one method."""
    input:
        train=P.gradients(task="{task}", split="train"),
        test=P.gradients(task="{task}", split=TARGET_SPLIT),
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
