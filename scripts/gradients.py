"""Snakemake adapter: rules gradients and gradients_chunk (a chunk store, or the merge of the chunk stores)."""
from inflbench.pipeline import stage_gradients, stage_merge_gradients
from inflbench.workflow import named, rule_logging, set_threads

with rule_logging(snakemake.log[0]):
    set_threads(snakemake.threads)
    inputs = named(snakemake.input)
    if inputs.get("chunks"):
        stage_merge_gradients(list(snakemake.input.chunks), snakemake.output.grads)
    else:
        chunk = (int(snakemake.wildcards.get("chunk", 0)), snakemake.params.chunks)
        stage_gradients(snakemake.params.model, snakemake.params.gradients, snakemake.params.seed,
                        snakemake.params.device, inputs["adapter"], {s: inputs[s] for s in ("train", "val", "test")},
                        snakemake.wildcards.split, snakemake.output.grads, chunk)
