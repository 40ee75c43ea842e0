"""Snakemake adapter of rule identification_table."""
from inflbench.jobs import run
from inflbench.studies.identification.stages import stage_identification_table

run(snakemake, stage_identification_table)  # noqa: F821 (snakemake is injected)
