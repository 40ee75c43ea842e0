"""Snakemake adapter of rule pretrain."""
from inflbench.jobs import run
from inflbench.stages import stage_pretrain

run(snakemake, stage_pretrain, torch_threads=True)  # noqa: F821 (snakemake is injected)
