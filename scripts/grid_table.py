"""Snakemake adapter of rule grid_table."""
from inflbench.jobs import run
from inflbench.studies.identification.grid import stage_grid_table

run(snakemake, stage_grid_table)  # noqa: F821 (snakemake is injected)
