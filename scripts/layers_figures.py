"""Snakemake adapter of rule layers_figures."""
from inflbench.jobs import run
from inflbench.studies.layer_choice.report import stage_figures

run(snakemake, stage_figures)  # noqa: F821 (snakemake is injected)
