"""Snakemake adapter of rule layers_aggregate."""
from inflbench.jobs import run
from inflbench.studies.layer_choice.stages import stage_aggregate

run(snakemake, stage_aggregate)  # noqa: F821 (snakemake is injected)
