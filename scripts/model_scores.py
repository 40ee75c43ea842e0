"""Snakemake adapter of rule model_scores."""
from inflbench.jobs import run
from inflbench.stages import stage_model_scores

run(snakemake, stage_model_scores, torch_threads=True)  # noqa: F821 (snakemake is injected)
