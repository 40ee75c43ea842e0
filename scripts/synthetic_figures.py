"""Snakemake adapter of rule synthetic_figures."""
from inflbench.jobs import run
from inflbench.studies.synthetic.stages import stage_figures

run(snakemake, stage_figures)  # noqa: F821 (snakemake is injected)
