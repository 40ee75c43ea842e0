"""Snakemake adapter: rule gradients."""
from inflbench.pipeline import stage_gradients
from inflbench.workflow import named, rule_logging, set_threads

with rule_logging(snakemake.log[0]):
    set_threads(snakemake.threads)
    inputs = named(snakemake.input)
    stage_gradients(snakemake.params.model, snakemake.params.gradients, snakemake.params.seed,
                    snakemake.params.device, inputs["adapter"], {s: inputs[s] for s in ("train", "val", "test")},
                    snakemake.wildcards.split, snakemake.output.grads)
