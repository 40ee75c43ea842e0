"""Snakemake adapter: rule detection_metrics."""
from inflbench.pipeline import stage_detection
from inflbench.workflow import rule_logging

with rule_logging(snakemake.log[0]):
    stage_detection(snakemake.input.scores, snakemake.input.train, snakemake.params.points,
                    snakemake.output.curve, snakemake.output.summary, snakemake.wildcards.method,
                    snakemake.wildcards.task)
