"""Snakemake adapter of rule layers_tables."""
from inflbench.jobs import run
from inflbench.studies.layer_choice.report import stage_tables

run(snakemake, stage_tables)  # noqa: F821 (snakemake is injected)
