"""Snakemake adapter: rule identification_table."""
from inflbench.identification import stage_identification_table
from inflbench.workflow import rule_logging

with rule_logging(snakemake.log[0]):
    stage_identification_table(list(snakemake.input), snakemake.output[0], dict(snakemake.params.config))
