"""Snakemake adapter of rule layers_retrain."""
from inflbench.jobs import run
from inflbench.studies.layer_choice.stages import stage_retrain

run(snakemake, stage_retrain, torch_threads=True)  # noqa: F821 (snakemake is injected)
