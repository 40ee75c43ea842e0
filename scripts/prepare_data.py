"""Snakemake adapter: rule prepare_data."""
from inflbench.pipeline import stage_prepare_data
from inflbench.workflow import named, rule_logging

with rule_logging(snakemake.log[0]):
    stage_prepare_data(snakemake.params.data, snakemake.wildcards.task, snakemake.params.seed,
                       named(snakemake.output))
