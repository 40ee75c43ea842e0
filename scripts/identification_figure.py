"""Snakemake adapter of rule identification_figure."""
from inflbench.jobs import run
from inflbench.studies.identification.stages import stage_identification_figure

run(snakemake, stage_identification_figure)  # noqa: F821 (snakemake is injected)
