GRAD_CHUNKS = CFG["gradients"]["chunks"]
_GRAD_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}[CFG["gradients"]["dtype"]]


def _grad_mem(wildcards):
    return scaled_mb(RES.gradients_mem_mb(grad_shape(), CFG["model"], CFG["gradients"]["batch_size"], 1, _GRAD_BYTES,
                                    CFG["device"]))


def _grad_runtime(wildcards, chunks=1):
    return scaled_min(RES.gradients_runtime(grad_shape(), split_size(wildcards.split), CFG["device"], MAX_THREADS,
                                         chunks))


rule gradients_chunk:
    """Per-sample gradients of the selected blocks (gradients.blocks) for one sample chunk of a split,
    streamed batch by batch into a store (gradients.chunks > 1; rule gradients merges the chunks)."""
    input:
        unpack(lambda w: split_inputs(w.task)),
        adapter=P.adapter(task="{task}"),
    output:
        grads=temp(P.gradient_chunk(task="{task}", split="{split}", chunk="{chunk}")),
        index=temp(P.gradient_chunk_index(task="{task}", split="{split}", chunk="{chunk}")),
    params:
        model=CFG["model"],
        gradients=CFG["gradients"],
        seed=CFG["seed"],
        device=CFG["device"],
        chunks=GRAD_CHUNKS,
    log:
        P.log(stage="gradients", name="{task}_{split}_{chunk}"),
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


rule gradients:
    """Per-sample gradients of the selected blocks (gradients.blocks, batched hooks), streamed into one
    store per split; with gradients.chunks > 1 the merge of the chunk stores."""
    input:
        unpack(lambda w: split_inputs(w.task) if GRAD_CHUNKS == 1 else {}),
        adapter=P.adapter(task="{task}") if GRAD_CHUNKS == 1 else [],
        chunks=lambda w: [] if GRAD_CHUNKS == 1 else
            [P.gradient_chunk(task=w.task, split=w.split, chunk=i) for i in range(GRAD_CHUNKS)],
        chunk_indexes=lambda w: [] if GRAD_CHUNKS == 1 else
            [P.gradient_chunk_index(task=w.task, split=w.split, chunk=i) for i in range(GRAD_CHUNKS)],
    output:
        grads=P.gradients(task="{task}", split="{split}"),
        index=P.gradient_index(task="{task}", split="{split}"),
    params:
        model=CFG["model"],
        gradients=CFG["gradients"],
        seed=CFG["seed"],
        device=CFG["device"],
        chunks=1,
    log:
        P.log(stage="gradients", name="{task}_{split}"),
    threads: MAX_THREADS if GRAD_CHUNKS == 1 else 1
    resources:
        mem_mb=_grad_mem if GRAD_CHUNKS == 1 else 1500,
        runtime=_grad_runtime if GRAD_CHUNKS == 1 else lambda w: scaled_min(10 + split_size(w.split) // 2000),
        gpu=GPU if GRAD_CHUNKS == 1 else 0,
    conda:
        ENV
    script:
        "../scripts/gradients.py"
