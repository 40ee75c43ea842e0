"""Snakemake adapter of rule layers_mask."""
from inflbench.jobs import run
from inflbench.studies.layer_choice.stages import stage_mask

run(snakemake, stage_mask)  # noqa: F821 (snakemake is injected)
