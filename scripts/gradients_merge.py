"""Snakemake adapter of rule gradients with gradients.chunks > 1 (the merge of the chunk stores)."""
from inflbench.jobs import run
from inflbench.stages import stage_merge_gradients

run(snakemake, stage_merge_gradients)  # noqa: F821 (snakemake is injected)
