# Shared by every study: the validated config (schema defaults filled, section checks run, study switches
# resolved) as CFG, the run's Layout P, and the constants of the rules. Snakemake's `config` is left as given.
import sys

from inflbench.config import validate_config
from inflbench.errors import InputError
from inflbench.methods import get as get_method
from inflbench.paths import Layout, html_of
from inflbench.studies import STUDIES

try:
    CFG = validate_config(config)
except InputError as exc:
    sys.exit(f"inflbench: invalid input: {exc}")

P = Layout.from_config(CFG)
ON = {name: study.enabled(CFG) for name, study in STUDIES.items()}  # study -> enabled
TASKS = list(CFG["data"]["tasks"])
METHODS = list(CFG["methods"])
GRADIENT_METHODS = [m for m in METHODS if not get_method(m).needs_model]
MODEL_METHODS = [m for m in METHODS if get_method(m).needs_model]
GPU = int(CFG["device"] == "cuda")
MAX_THREADS = 8  # torch-heavy jobs; Snakemake caps it at --cores
ENV = "../envs/inflbench-cpu.yaml"
DETECTION_PRIORITY = 10  # the core path and the headline tables run before the slower studies


wildcard_constraints:
    task="|".join(TASKS),
    split="train|val|test",


# influence targets: validation samples for mislabeled detection, test samples for identification
TARGET_SPLIT = "test" if ON["identification"] else "val"


def split_inputs(task):
    return {s: P.split(task=task, split=s) for s in ("train", "val", "test")}


# flagged training examples of every (task, method), for the detection and identification studies
TOPK_TARGETS = expand(html_of(P.topk(task="{task}", method="{method}")), task=TASKS, method=METHODS)
