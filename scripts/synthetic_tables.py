"""Snakemake adapter of rule synthetic_tables."""
from inflbench.jobs import run
from inflbench.studies.synthetic.stages import stage_tables

run(snakemake, stage_tables)  # noqa: F821 (snakemake is injected)
