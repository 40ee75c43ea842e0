"""Snakemake adapter: rule identification_figure."""
from inflbench.identification import stage_identification_figure
from inflbench.workflow import rule_logging

with rule_logging(snakemake.log[0]):
    points = dict(zip(snakemake.params.methods, snakemake.input.points))
    stage_identification_figure(points, snakemake.wildcards.task, snakemake.output[0])
