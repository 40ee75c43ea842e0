"""Snakemake adapter of rule finetune."""
from inflbench.jobs import run
from inflbench.stages import stage_finetune

run(snakemake, stage_finetune, torch_threads=True)  # noqa: F821 (snakemake is injected)
