"""Snakemake adapter: rule detection_figure."""
from inflbench.pipeline import stage_detection_figure
from inflbench.workflow import rule_logging

with rule_logging(snakemake.log[0]):
    curves = dict(zip(snakemake.params.methods, snakemake.input.curves))
    stage_detection_figure(curves, snakemake.wildcards.task, snakemake.output[0])
