"""Snakemake adapter: rule block_stats (Grams and norms shared by the curvature methods)."""
from inflbench.pipeline import stage_block_stats
from inflbench.workflow import rule_logging, set_threads

with rule_logging(snakemake.log[0]):
    set_threads(snakemake.threads)
    stage_block_stats(snakemake.input[0], snakemake.output[0])
