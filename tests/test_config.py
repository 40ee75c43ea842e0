"""Bad input fails before any job runs, with one line naming the key or file."""

import copy
import subprocess
import sys

import pytest
import yaml

from common import ROOT, snakemake
from inflbench.config import validate_config
from inflbench.errors import DataError, InputError

DEFAULT = yaml.safe_load((ROOT / "config.yaml").read_text())


def _with(path: str, value):
    cfg = copy.deepcopy(DEFAULT)
    *parents, leaf = path.split(".")
    node = cfg
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return cfg


def test_default_config_is_valid_and_filled():
    cfg = validate_config(DEFAULT)
    assert cfg["data"]["sizes"] == {"train": 400, "val": 80, "test": 100}
    assert cfg["experiment"] == "mislabeled_detection"
    assert cfg["train"]["eval_batch_size"] == 64  # schema default filled in
    assert validate_config({})["methods"]  # an empty config gets every default


@pytest.mark.parametrize("path,value,message", [
    ("data.bogus", 1, r"config key 'data.bogus': unknown key"),
    ("extra_top_level", 1, r"config key 'extra_top_level': unknown key"),
    ("train.epochs", "ten", r"config key 'train.epochs': 'ten' is not of type 'integer'"),
    ("train.lr", -0.1, r"config key 'train.lr': -0.1 is less than or equal to the minimum of 0"),
    ("data.noise_fraction", 1.0, r"config key 'data.noise_fraction': 1.0 is greater than or equal to the maximum"),
    ("data.noise_fraction", -0.2, r"config key 'data.noise_fraction': -0.2 is less than the minimum"),
    ("data.source", "kaggle", r"config key 'data.source': unknown source 'kaggle'; choose one of"),
    ("methods", {"tracin": {}, "magic": {}}, r"config key 'methods.magic': unknown influence method 'magic'"),
    ("methods", {"datainf": {"damping": -1.0}}, r"config key 'methods.datainf': .*damping"),
    ("methods", {"tracin": {"depth": 3}}, r"config key 'methods.tracin': .*unknown parameter"),
    ("model.family", "gan", r"config key 'model.family': unknown family 'gan'"),
    ("run", "../escape", r"config key 'run': .*does not match"),
    ("data.tasks", ["SST-2"], r"config key 'data.tasks': source 'generated' provides the task 'generated'"),
    ("device", "tpu", r"config key 'device': 'tpu' is not one of"),
    ("data.generated", {"neutral": 1.5}, r"config key 'data.generated.neutral': 1.5 is greater than the maximum"),
    ("data.generated", {"negated": "many"}, r"config key 'data.generated.negated': 'many' is not of type 'number'"),
    ("data.generated", {"neutral": 0.6, "negated": 0.5}, r"config key 'data.generated': neutral \+ negated must not"),
    ("data.options", {"test_share": 0.2}, r"config key 'data.options.test_share': unknown key"),
])
def test_bad_config_values(path, value, message):
    with pytest.raises(InputError, match=message) as info:
        validate_config(_with(path, value))
    assert "\n" not in str(info.value)


def test_glue_dir_problems(tmp_path):
    cfg = _with("data.source", "glue_dir")
    cfg["data"]["tasks"] = ["SST-2"]
    with pytest.raises(InputError, match="config key 'data.glue_dir': must be set"):
        validate_config(cfg)
    cfg["data"]["glue_dir"] = str(tmp_path)
    with pytest.raises(DataError, match=r"SST-2/train.tsv: file not found"):
        validate_config(cfg)
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text("sentence\tlabel\nfine\t1\nbroken row without tab\n")
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    with pytest.raises(DataError, match=r"train.tsv:3: expected 2 tab-separated columns, found 1"):
        validate_config(cfg)
    cfg["data"]["tasks"] = ["SST2"]
    with pytest.raises(InputError, match=r"config key 'data.tasks': unknown GLUE task 'SST2'"):
        validate_config(cfg)


def test_snakemake_rejects_bad_config_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"results_dir": str(tmp_path / "results"), "train": {"batch_size": 0}}))
    proc = snakemake("--cores", "1", "--configfile", str(bad), workdir=tmp_path, timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("inflbench:")]
    assert lines == ["inflbench: invalid input: config key 'train.batch_size': 0 is less than the minimum of 1"]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


def test_model_method_without_its_dependency_fails_clearly(monkeypatch):
    import inflbench.methods.ekfac as ekfac

    cfg = _with("methods.ekfac", {})
    monkeypatch.setattr(ekfac, "kronfluence_available", lambda: False)
    with pytest.raises(InputError, match=r"config key 'methods.ekfac': EK-FAC needs the optional dependency "
                                         r"'kronfluence'.*pip install --no-deps kronfluence"):
        validate_config(cfg)
    monkeypatch.setattr(ekfac, "kronfluence_available", lambda: True)
    assert "ekfac" in validate_config(cfg)["methods"]
    with pytest.raises(InputError, match=r"methods.ekfac"):
        validate_config(_with("methods.ekfac", {"damping": -1.0}))


def test_kronfluence_lookup_agrees_with_importing_it_and_imports_nothing():
    """The config check finds kronfluence without importing it; the answer is the import's, and one missing
    module kronfluence imports makes it False."""
    code = ("import sys; from inflbench.methods import ekfac; found = ekfac.kronfluence_available(); "
            "imported = 'kronfluence' in sys.modules\n"
            "try:\n    import kronfluence; works = True\nexcept ImportError:\n    works = False\n"
            "ekfac._KRONFLUENCE_MODULES += ('no_such_module_xyz',)\n"
            "print(found, imported, works, ekfac.kronfluence_available())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found, imported, works, with_missing = proc.stdout.split()
    assert (found, imported, with_missing) == (works, "False", "False")


# jobs that load models, gradients or scores; every other job's script starts without torch (~2 s each)
TORCH_SCRIPTS = {"block_stats", "finetune", "gradients", "gradients_merge", "model_scores", "prepare_data",
                 "pretrain", "scores", "scores_merge"}


def test_light_job_scripts_start_without_torch():
    """The module-level imports of the table, metric, mask and figure scripts do not pull in torch (the
    solvers package resolves its names on first use), and the solvers' names still resolve."""
    light = sorted(p for p in (ROOT / "scripts").glob("*.py") if p.stem not in TORCH_SCRIPTS)
    assert len(light) > 15
    code = ("import ast, sys\n"
            "for path in sys.argv[1:]:\n"
            "    for node in ast.parse(open(path).read()).body:\n"
            "        if isinstance(node, (ast.Import, ast.ImportFrom)):\n"
            "            exec(compile(ast.Module([node], []), path, 'exec'), {})\n"
            "    assert 'torch' not in sys.modules, path\n"
            "from inflbench import solvers\n"
            "assert 'torch' not in sys.modules\n"
            "from inflbench.solvers import sym_gram, rrinf_sgd\n"
            "assert sym_gram.__module__ == 'inflbench.solvers.common' and 'torch' in sys.modules\n"
            "try:\n    from inflbench.solvers import no_such_solver\nexcept ImportError:\n    print('ok')")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, light)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.split() == ["ok"], proc.stderr[-2000:]


@pytest.mark.parametrize("overlay, det, ide, exp", [
    ({}, True, False, "mislabeled_detection"),
    ({"experiment": "influential_data"}, False, True, "influential_data"),  # the older spelling keeps its meaning
    ({"identification": {"enabled": True}}, False, True, "influential_data"),
    ({"detection": {"enabled": False}}, False, False, "mislabeled_detection"),
    ({"experiment": "mislabeled_detection", "identification": {"enabled": False}}, True, False,
     "mislabeled_detection"),
])
def test_study_switches(overlay, det, ide, exp):
    cfg = validate_config({**copy.deepcopy(DEFAULT), **overlay})
    assert (cfg["detection"]["enabled"], cfg["identification"]["enabled"], cfg["experiment"]) == (det, ide, exp)
    assert cfg["layers"]["enabled"] is det  # the default layer study needs detection
    assert cfg["synthetic"]["enabled"] is True


@pytest.mark.parametrize("overlay, message", [
    ({"detection": {"enabled": True}, "identification": {"enabled": True}}, "identification.enabled"),
    ({"experiment": "influential_data", "identification": {"enabled": False}}, "identification.enabled': false"),
    ({"detection": {"enabled": "yes"}}, "detection.enabled"),
])
def test_study_switch_conflicts(overlay, message):
    with pytest.raises(InputError, match=message):
        validate_config({**copy.deepcopy(DEFAULT), **overlay})


def test_synthetic_switch_keeps_the_older_meaning():
    assert validate_config({})["synthetic"]["enabled"] is False  # no block: off
    assert validate_config({"synthetic": {"dims": [64]}})["synthetic"]["enabled"] is True  # a block: on
    off = validate_config({"synthetic": {"enabled": False, "dims": [64]}})["synthetic"]
    assert off["enabled"] is False and off["dims"] == [64]
