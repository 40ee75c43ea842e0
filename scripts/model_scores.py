"""Snakemake adapter: rule model_scores (methods that need the model, e.g. EK-FAC)."""
from inflbench.pipeline import stage_model_scores
from inflbench.workflow import named, rule_logging, set_threads

with rule_logging(snakemake.log[0]):
    set_threads(snakemake.threads)
    inputs = named(snakemake.input)
    p = snakemake.params
    stage_model_scores(snakemake.wildcards.method, dict(p.method_params), p.model, p.seed, p.device,
                       inputs["adapter"], {s: inputs[s] for s in ("train", "val", "test")}, p.target_split,
                       p.batch_size, snakemake.output[0])
