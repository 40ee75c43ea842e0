"""Snakemake adapter: rule layers_retrain."""
from inflbench.layers.stages import stage_retrain
from inflbench.workflow import named, rule_logging, set_threads

with rule_logging(snakemake.log[0]):
    set_threads(snakemake.threads)
    inputs = named(snakemake.input)
    spec = {k: v for k, v in dict(snakemake.params.spec).items() if k != "seeds"}
    meta = {**spec, "selector": snakemake.wildcards.selector, "task": snakemake.wildcards.task}
    stage_retrain(snakemake.params.model, snakemake.params.train, snakemake.params.init_seed,
                  int(snakemake.wildcards.seed), snakemake.params.device,
                  {s: inputs[s] for s in ("train", "val", "test")}, inputs["keep"], snakemake.output[0], meta)
