"""Snakemake adapter of rule topk."""
from inflbench.jobs import run
from inflbench.topk import stage_topk

run(snakemake, stage_topk)  # noqa: F821 (snakemake is injected)
