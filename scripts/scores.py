"""Snakemake adapter: rules scores and scores_shard (methods that work on stored gradients)."""
from inflbench.pipeline import stage_scores
from inflbench.workflow import rule_logging, set_threads

with rule_logging(snakemake.log[0]):
    set_threads(snakemake.threads)
    shard = (int(snakemake.wildcards.get("shard", 0)), snakemake.params.get("shards", 1))
    stage_scores(snakemake.wildcards.method, dict(snakemake.params.method_params), snakemake.input.train,
                 snakemake.input.test, snakemake.output[0], dict(snakemake.params.scores), shard)
