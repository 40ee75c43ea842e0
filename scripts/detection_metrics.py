"""Snakemake adapter of rule detection_metrics."""
from inflbench.jobs import run
from inflbench.studies.detection.stages import stage_detection

run(snakemake, stage_detection)  # noqa: F821 (snakemake is injected)
