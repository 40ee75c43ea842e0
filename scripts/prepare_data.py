"""Snakemake adapter of rule prepare_data."""
from inflbench.jobs import run
from inflbench.stages import stage_prepare_data

run(snakemake, stage_prepare_data)  # noqa: F821 (snakemake is injected)
