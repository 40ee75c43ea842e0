"""Snakemake adapter of the rules <study>_seeds."""
from inflbench.jobs import run
from inflbench.replicates import stage_seeds_tables

run(snakemake, stage_seeds_tables)  # noqa: F821 (snakemake is injected)
