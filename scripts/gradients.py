"""Snakemake adapter of rule gradients."""
from inflbench.jobs import run
from inflbench.stages import stage_gradients

run(snakemake, stage_gradients, torch_threads=True)  # noqa: F821 (snakemake is injected)
