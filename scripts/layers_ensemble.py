"""Snakemake adapter: rule layers_ensemble."""
from inflbench.layers.stages import stage_ensemble
from inflbench.workflow import named, rule_logging

with rule_logging(snakemake.log[0]):
    stage_ensemble(dict(zip(snakemake.params.methods, snakemake.input.scores)), snakemake.input.train,
                   snakemake.input.predictions, dict(snakemake.params.groups), dict(snakemake.params.layers),
                   snakemake.wildcards.task, named(snakemake.output))
