"""Snakemake adapter of rule scores."""
from inflbench.jobs import run
from inflbench.stages import stage_scores

run(snakemake, stage_scores, torch_threads=True)  # noqa: F821 (snakemake is injected)
