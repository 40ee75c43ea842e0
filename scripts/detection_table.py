"""Snakemake adapter of rule detection_table."""
from inflbench.jobs import run
from inflbench.studies.detection.stages import stage_detection_table

run(snakemake, stage_detection_table)  # noqa: F821 (snakemake is injected)
