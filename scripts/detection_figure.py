"""Snakemake adapter of rule detection_figure."""
from inflbench.jobs import run
from inflbench.studies.detection.stages import stage_detection_figure

run(snakemake, stage_detection_figure)  # noqa: F821 (snakemake is injected)
