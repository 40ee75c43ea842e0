"""Snakemake adapter of rule synthetic_cell."""
from inflbench.jobs import run
from inflbench.studies.synthetic.stages import stage_cell

run(snakemake, stage_cell, torch_threads=True)  # noqa: F821 (snakemake is injected)
