"""Snakemake adapter: rule layers_mask."""
from inflbench.layers.stages import stage_mask
from inflbench.workflow import rule_logging

with rule_logging(snakemake.log[0]):
    inputs = dict(snakemake.input.items())
    stage_mask(dict(snakemake.params.spec), inputs.get("scores"), snakemake.input.train,
               int(snakemake.wildcards.seed), snakemake.output[0])
