"""Snakemake adapter: rule detection_table."""
from inflbench.pipeline import stage_detection_table
from inflbench.workflow import rule_logging

with rule_logging(snakemake.log[0]):
    stage_detection_table(list(snakemake.input), snakemake.output[0], dict(snakemake.params.config))
