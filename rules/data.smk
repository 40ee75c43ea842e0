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
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/prepare_data.py"
