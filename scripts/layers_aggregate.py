"""Snakemake adapter: rule layers_aggregate."""
from inflbench.layers.stages import stage_aggregate
from inflbench.workflow import named, rule_logging

with rule_logging(snakemake.log[0]):
    stage_aggregate(snakemake.input.scores, snakemake.input.train, snakemake.input.predictions,
                    dict(snakemake.params.groups), dict(snakemake.params.layers), snakemake.wildcards.method,
                    snakemake.wildcards.task, named(snakemake.output))
