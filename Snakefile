# inflbench: training-data influence estimation benchmark.
# The config is validated (schema + semantic checks + data files) before any job is scheduled.
from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/finetune.smk"
include: "rules/gradients.smk"
include: "rules/scores.smk"
include: "rules/evaluate.smk"
include: "rules/identification.smk"
include: "rules/synthetic.smk"
include: "rules/layers.smk"


report: "reports/workflow.rst"


rule all:
    input:
        EXPERIMENT_TARGETS,
        LAYER_TARGETS,
        rules.synthetic.input if CFG["synthetic"] else [],
