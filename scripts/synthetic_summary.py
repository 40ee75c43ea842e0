"""Snakemake adapter of rule synthetic_summary."""
from inflbench.jobs import run
from inflbench.studies.synthetic.stages import stage_summary

run(snakemake, stage_summary)  # noqa: F821 (snakemake is injected)
