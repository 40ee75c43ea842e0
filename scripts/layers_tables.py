"""Snakemake adapter: rule layers_tables."""
from inflbench.layers.report import stage_tables
from inflbench.workflow import as_dict, named, rule_logging

with rule_logging(snakemake.log[0]):
    layers = dict(snakemake.params.layers)
    keys = [f"{t}|{m}" for t in snakemake.params.tasks for m in snakemake.params.methods]  # expand() order
    stage_tables(list(snakemake.input.runs), list(snakemake.input.ndr), list(snakemake.input.cancellation),
                 dict(zip(keys, snakemake.input.scores)), layers["pareto_threshold"], named(snakemake.output),
                 {"layers": as_dict(snakemake.params)["layers"]})
