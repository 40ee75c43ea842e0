# Shared by every study: the validated config (schema defaults filled, section checks run, study switches
# resolved) as CFG, the run's Layout P, and the constants of the rules. Snakemake's `config` is left as given.
import sys

from inflbench.checks import check_config_files, dry_run_requested
from inflbench.config import profile_config, run_seeds, validate_config
from inflbench.errors import InputError
from inflbench.methods import get as get_method, method_entry
from inflbench.models.pretrain import enabled as pretrain_enabled, with_checkpoint as with_pretrain_checkpoint
from inflbench.paths import Layout, html_of
from inflbench.studies import STUDIES

try:
    # the files as written (Snakemake's reader keeps the last of duplicate keys), base first
    check_config_files([f for f in workflow.configfiles if f not in workflow.overwrite_configfiles]
                       + list(workflow.overwrite_configfiles))
    # a standalone profile (standalone: true) is not merged over config.yaml
    CFG = validate_config(profile_config(dict(config), workflow.config_settings.overwrite_config),
                          planning_only=dry_run_requested(sys.argv))
except InputError as exc:
    sys.exit(f"inflbench: invalid input: {exc}")

P = Layout.from_config(CFG)  # the run: tables over seeds (and everything of a single-seed run)
CFG = with_pretrain_checkpoint(CFG, P.pretrained())  # jobs that build the model load the pretrained weights
PRETRAINED = [P.pretrained()] if pretrain_enabled(CFG["model"]) else []  # input of the fine-tunes
SEEDS = run_seeds(CFG)  # replicates: each re-draws data, label flips, fine-tune and scores
REPLICATED = bool(CFG.get("seeds"))
R = P.replicate("{rep}") if REPLICATED else P  # the outputs of one replicate (wildcard rep)
ON = {name: study.enabled(CFG) for name, study in STUDIES.items()}  # study -> enabled
TASKS = list(CFG["data"]["tasks"])
METHODS = list(CFG["methods"])
BASE_METHOD = {m: method_entry(m, CFG["methods"][m])[0] for m in METHODS}  # entry name -> registered method
GRADIENT_METHODS = [m for m in METHODS if not get_method(BASE_METHOD[m]).needs_model]
MODEL_METHODS = [m for m in METHODS if get_method(BASE_METHOD[m]).needs_model]
GPU = int(CFG["device"] == "cuda")
MAX_THREADS = 8  # torch-heavy jobs; Snakemake caps it at --cores
ENV = "../envs/inflbench-cpu.yaml"
DETECTION_PRIORITY = 10  # the core path and the headline tables run before the slower studies


wildcard_constraints:
    task="|".join(TASKS),
    split="train|val|test",
    rep=r"\d+",


# influence targets: validation samples for mislabeled detection, test samples for identification
TARGET_SPLIT = "test" if ON["identification"] else "val"


def split_inputs(task, layout=R):
    return {s: layout.split(task=task, split=s) for s in ("train", "val", "test")}


# ---- ablation grid (config `grid`; rules at the end of rules/identification.smk)
from inflbench.studies.identification.grid import grid_of, setting_configs, shares, shares_scores

GRID = grid_of(CFG)
if GRID is None and "grid" in sys.argv[1:]:  # the target on the command line
    sys.exit("inflbench: invalid input: target 'grid' needs a config section `grid` (a built-in grid name or "
             "{name, method, settings}; docs/identification.md)")
GRID_CFG = setting_configs(CFG, validate_config) if GRID else {}  # setting -> its validated config (run config + overlay)
for _name, _cfg in GRID_CFG.items():  # one pretrained model per run
    if (_cfg["model"].get("options") or {}).get("pretrain") != (CFG["model"].get("options") or {}).get("pretrain"):
        sys.exit(f"inflbench: invalid input: grid setting '{_name}': config key 'model.options.pretrain': a setting "
                 "cannot change the pretraining (one pretrained model per run)")
G = R.grid_setting(GRID.name, "{setting}") if GRID else None  # the outputs a setting does not share
GRID_METHODS = list(dict.fromkeys(m for c in GRID_CFG.values() for m in c["methods"]))
for _cfg in GRID_CFG.values():
    BASE_METHOD.update({m: method_entry(m, e)[0] for m, e in _cfg["methods"].items() if m not in BASE_METHOD})
GRID_MODEL_METHODS = [m for m in GRID_METHODS if get_method(BASE_METHOD[m]).needs_model]
GRID_GRADIENT_METHODS = [m for m in GRID_METHODS if m not in GRID_MODEL_METHODS]


wildcard_constraints:
    setting="|".join(GRID.settings) if GRID else "^$",


def rep_layout(rep=None):
    """The layout of one replicate seed (the run's own in a single-seed run)."""
    return P.replicate(rep) if REPLICATED else P


def setting_layout(w, stage=None):
    """Where a grid setting's output of ``stage`` (data, model, gradients) lives: the run's when the setting
    leaves that stage's config unchanged, else the setting's own."""
    if stage and shares(CFG, GRID_CFG[w.setting], stage):
        return rep_layout(w.get("rep"))
    return rep_layout(w.get("rep")).grid_setting(GRID.name, w.setting)


def setting_cfg(section):
    """Param function: one config section of the job's grid setting."""
    return lambda w: GRID_CFG[w.setting][section]


def grid_summaries():
    """(identification summary, rep, setting) of every method of every setting and replicate; the run's own
    summary where the setting leaves the method's scores unchanged."""
    out = []
    for rep in SEEDS:
        layout = rep_layout(rep)
        for setting, cfg in GRID_CFG.items():
            for m in cfg["methods"]:
                own = layout if shares_scores(CFG, cfg, m) else layout.grid_setting(GRID.name, setting)
                out.append((own.identification_summary(task="{task}", method=m), rep, setting))
    return [(path.format(task=t), rep, s) for t in TASKS for path, rep, s in out]


# ---- resources that follow the data (inflbench.resources; docs/scale.md)
from inflbench import resources as RES
from inflbench.scoring import separable as _separable

N_TRAIN = CFG["data"]["sizes"]["train"]
N_TARGET = CFG["data"]["sizes"][TARGET_SPLIT]
SCORES_DEVICE = CFG["scores"].get("device") or CFG["device"]
SCORES_GPU = int(SCORES_DEVICE == "cuda")
_SHAPE = {}


def grad_shape():
    """Per-sample gradient size of the stored blocks (built once, from the model's config on the meta device)."""
    if not _SHAPE:
        from inflbench.shapes import gradient_shape

        _SHAPE.update(gradient_shape(CFG["model"], CFG["gradients"]["blocks"]) or RES.FALLBACK)
    return _SHAPE


def scaled_mb(mb):
    return int(mb * CFG["resources"]["mem_factor"])


def scaled_min(m):
    return int(m * CFG["resources"]["runtime_factor"])


def split_size(split):
    return CFG["data"]["sizes"][split]


SEED_TABLES = ["per_seed", "aggregate", "paired"]  # tables over replicate seeds


def seed_of(wildcards):
    """The replicate seed of a job."""
    return int(wildcards.rep) if REPLICATED else CFG["seed"]


def per_seed(pattern, **wildcards):
    """``pattern`` (a path of R) for every replicate seed (and the product of ``wildcards``)."""
    return expand(pattern, rep=SEEDS, **wildcards)


# the detection path first (detection.first): the synthetic study and the layer study's masks wait for the
# detection table; otherwise their 1-thread jobs fill the cores and a multi-thread fine-tune waits behind them
DETECTION_FIRST = ON["detection"] and CFG["detection"]["first"]


# flagged training examples of every (replicate,) task and method, for the detection and identification studies
TOPK_TARGETS = per_seed(html_of(R.topk(task="{task}", method="{method}")), task=TASKS, method=METHODS)


# ---- helpers of rules/core.smk (called when the DAG is built; they read that file's constants)


def _grad_mem(wildcards):
    return scaled_mb(RES.gradients_mem_mb(grad_shape(), CFG["model"], CFG["gradients"]["batch_size"], 1,
                                          _GRAD_BYTES, CFG["device"], CFG["gradients"]["activation_mb"]))


def _grad_runtime(wildcards, chunks=1):
    return scaled_min(RES.gradients_runtime(grad_shape(), split_size(wildcards.split), CFG["device"], MAX_THREADS,
                                            chunks))


def _shard_shape(shards):
    shape = dict(grad_shape())
    shape["d"] = shape["d"] // shards + shape["d_max"] * (shards > 1)
    return shape


def _scores_mem(wildcards, shards=1):
    return scaled_mb(RES.scores_mem_mb(BASE_METHOD[wildcards.method], _shard_shape(shards), N_TRAIN, N_TARGET,
                                       CFG["scores"]["group_mb"], _separable(BASE_METHOD[wildcards.method]), _STORE_BYTES))


def _scores_runtime(wildcards, shards=1):
    return scaled_min(RES.scores_runtime(BASE_METHOD[wildcards.method], _shard_shape(shards), N_TRAIN, N_TARGET, MAX_THREADS,
                                         SCORES_DEVICE))


# ---- helpers of rules/layer_choice.smk (bundled retrainings)


def _run_index(w):
    return RUN_INDEX[R.layer_retrain(task=w.task, selector=w.selector, seed=w.seed)]


def retrain_previous(w):
    i = _run_index(w)
    if not (RETRAIN_K > 1 and i % RETRAIN_K):
        return []
    return [LAYER_RUNS[i - 1].format(rep=w.rep) if REPLICATED else LAYER_RUNS[i - 1]]


def retrain_group(w):
    rep = f"{w.rep}_" if REPLICATED else ""
    return f"retrain{rep}{_run_index(w) // RETRAIN_K}" if RETRAIN_K > 1 else None
