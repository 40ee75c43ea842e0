"""Snakemake adapter of rule synthetic_collect."""
from inflbench.jobs import run
from inflbench.studies.synthetic.stages import stage_collect

run(snakemake, stage_collect)  # noqa: F821 (snakemake is injected)
