"""Snakemake adapter: rule identification_metrics."""
from inflbench.identification import stage_identification
from inflbench.workflow import rule_logging

with rule_logging(snakemake.log[0]):
    stage_identification(snakemake.input.scores, snakemake.input.train, snakemake.input.test,
                         snakemake.output.points, snakemake.output.summary, snakemake.wildcards.method,
                         snakemake.wildcards.task, dict(snakemake.params.model))
