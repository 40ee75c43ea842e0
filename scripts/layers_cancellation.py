"""Snakemake adapter of rule layers_cancellation."""
from inflbench.jobs import run
from inflbench.studies.layer_choice.stages import stage_cancellation

run(snakemake, stage_cancellation)  # noqa: F821 (snakemake is injected)
