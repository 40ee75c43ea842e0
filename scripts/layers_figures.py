"""Snakemake adapter: rule layers_figures."""
from inflbench.layers import report
from inflbench.workflow import rule_logging

with rule_logging(snakemake.log[0]):
    out = snakemake.output
    report.figure_accuracy(snakemake.input.runs, out.accuracy)
    report.figure_ndr_blocks(list(snakemake.input.blocks), out.ndr_blocks)
    report.figure_aggregation_change(snakemake.input.runs, out.aggregation_change)
    report.figure_deciles(list(snakemake.input.deciles), out.noise_deciles)
