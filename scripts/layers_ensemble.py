"""Snakemake adapter of rule layers_ensemble."""
from inflbench.jobs import run
from inflbench.studies.layer_choice.stages import stage_ensemble

run(snakemake, stage_ensemble)  # noqa: F821 (snakemake is injected)
