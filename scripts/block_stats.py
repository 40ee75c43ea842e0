"""Snakemake adapter of rule block_stats."""
from inflbench.jobs import run
from inflbench.stages import stage_block_stats

run(snakemake, stage_block_stats, torch_threads=True)  # noqa: F821 (snakemake is injected)
