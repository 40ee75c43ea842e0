"""Snakemake adapter: rule scores (methods that work on stored gradients)."""
from inflbench.pipeline import stage_scores
from inflbench.workflow import rule_logging, set_threads

with rule_logging(snakemake.log[0]):
    set_threads(snakemake.threads)
    stage_scores(snakemake.wildcards.method, dict(snakemake.params.method_params), snakemake.input.train,
                 snakemake.input.test, snakemake.output[0], (list(snakemake.input.stats) or [None])[0])
