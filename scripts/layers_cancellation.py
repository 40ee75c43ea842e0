"""Snakemake adapter: rule layers_cancellation."""
from inflbench.layers.stages import stage_cancellation
from inflbench.workflow import rule_logging

with rule_logging(snakemake.log[0]):
    stage_cancellation(snakemake.input.grads, dict(snakemake.params.groups), snakemake.params.extreme,
                       snakemake.wildcards.task, snakemake.output[0])
