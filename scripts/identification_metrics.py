"""Snakemake adapter of rule identification_metrics."""
from inflbench.jobs import run
from inflbench.studies.identification.stages import stage_identification

run(snakemake, stage_identification)  # noqa: F821 (snakemake is injected)
