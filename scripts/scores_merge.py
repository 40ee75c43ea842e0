"""Snakemake adapter: rule scores_merge (the shards of a sharded method's scores)."""
from inflbench.scoring import merge_score_files
from inflbench.workflow import rule_logging

with rule_logging(snakemake.log[0]):
    merge_score_files(list(snakemake.input.shards), snakemake.output[0])
