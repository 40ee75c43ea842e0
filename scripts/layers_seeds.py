"""Snakemake adapter of rule layers_seeds."""
from inflbench.jobs import run
from inflbench.studies.layer_choice.report import stage_seeds

run(snakemake, stage_seeds)  # noqa: F821 (snakemake is injected)
