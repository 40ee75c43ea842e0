# inflbench: training-data influence estimation benchmark, four studies on one DAG.
# The config is validated (schema + each section's checks + data files) before any job is scheduled; each
# study has an `enabled` switch (detection, identification, layers, synthetic) and a rule file.
from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"


include: "rules/common.smk"
include: "rules/core.smk"
include: "rules/detection.smk"
include: "rules/identification.smk"
include: "rules/layer_choice.smk"
include: "rules/synthetic.smk"


report: "reports/workflow.rst"


rule all:
    input:
        DETECTION_TARGETS,
        IDENTIFICATION_TARGETS,
        LAYER_TARGETS,
        SYN_TARGETS,
