"""Snakemake adapter: rule finetune."""
from inflbench.pipeline import stage_finetune
from inflbench.workflow import named, rule_logging, set_threads

with rule_logging(snakemake.log[0]):
    set_threads(snakemake.threads)
    inputs = named(snakemake.input)
    stage_finetune(snakemake.params.model, snakemake.params.train, snakemake.params.seed, snakemake.params.device,
                   {s: inputs[s] for s in ("train", "val", "test")},
                   snakemake.output.adapter, snakemake.output.curve, snakemake.output.predictions)
