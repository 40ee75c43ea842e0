"""Snakemake adapter of rule scores_merge (the shards of a sharded method's scores)."""
from inflbench.jobs import run
from inflbench.stages import stage_merge_scores

run(snakemake, stage_merge_scores)  # noqa: F821 (snakemake is injected)
