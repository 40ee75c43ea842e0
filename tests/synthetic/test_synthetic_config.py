"""Config validation: defaults, schema/defaults agreement, and one clear ConfigError per bad input."""
from pathlib import Path

import pytest
import yaml

from inflbench.errors import ConfigError
from inflbench.studies.synthetic.config import DEFAULTS, cell_params, is_known_solver, sor_omega, validate_config

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_valid_and_filled():
    cfg = validate_config({})
    assert cfg["damping"] == 0.01 and cfg["iterations"] == 40
    assert cfg["table"]["n_samples"] == max(cfg["n_samples"])
    assert cfg["table"]["distribution"] == cfg["distributions"][0]
    assert validate_config(cfg) == cfg  # idempotent (the Snakefile and the .smk may both call it)
    assert validate_config(None) == cfg


def test_schema_is_the_only_source_of_defaults():
    from inflbench.schemas import load_schema

    schema = load_schema("synthetic.schema.yaml")
    assert schema["additionalProperties"] is False
    for key, spec in schema["properties"].items():
        assert spec.get("description") and "default" in spec, key
    assert set(schema["properties"]) == set(DEFAULTS) | {"enabled"}
    filled = validate_config({})
    assert filled["iterations"] == schema["properties"]["iterations"]["default"] == 40
    assert filled["table"]["n_samples"] == max(filled["n_samples"])  # resolved from the grid
    assert "enabled" not in filled and validate_config({"enabled": False})["enabled"] is False


@pytest.mark.parametrize("path", ["configs/synthetic-default.block.yaml", "configs/synthetic-full.yaml"])
def test_shipped_configs_are_valid(path):
    cfg = validate_config(yaml.safe_load((ROOT / path).read_text())["synthetic"])
    assert set(cfg["distributions"]) <= {"normal_0_1", "normal_05_1", "normal_0_5", "normal_05_5", "uniform_0_1"}


def test_reduced_default_grid_is_small():
    cfg = validate_config(yaml.safe_load((ROOT / "configs/synthetic-default.block.yaml").read_text())["synthetic"])
    assert max(cfg["dims"]) <= 512 and max(cfg["n_samples"]) <= 800 and len(cfg["distributions"]) == 2


def test_full_grid_is_the_paper_grid():
    cfg = validate_config(yaml.safe_load((ROOT / "configs/synthetic-full.yaml").read_text())["synthetic"])
    assert cfg["dims"] == [512, 1024, 2048, 4096] and cfg["n_samples"] == [200, 800, 6400, 12800]
    assert len(cfg["distributions"]) == 5 and len(cfg["seeds"]) >= 2 and cfg["damping"] == 0.01


@pytest.mark.parametrize(
    "given, key",
    [
        ({"dims": [-1]}, "synthetic.dims"),
        ({"dims": [0, 512]}, "synthetic.dims"),
        ({"dims": []}, "synthetic.dims"),
        ({"dims": "512"}, "synthetic.dims"),
        ({"n_samples": [0]}, "synthetic.n_samples"),
        ({"n_samples": [200, -5]}, "synthetic.n_samples"),
        ({"damping": 0}, "synthetic.damping"),
        ({"damping": -0.01}, "synthetic.damping"),
        ({"damping": "small"}, "synthetic.damping"),
        ({"distributions": ["normal_0_1", "cauchy"]}, "synthetic.distributions"),
        ({"solvers": ["schulz_paper", "magic"]}, "synthetic.solvers"),
        ({"solvers": ["sor_2.5"]}, "synthetic.solvers"),
        ({"seeds": [-1]}, "synthetic.seeds"),
        ({"iterations": 0}, "synthetic.iterations"),
        ({"dtype": "float16"}, "synthetic.dtype"),
        ({"schulz_x0": 0}, "synthetic.schulz_x0"),
        ({"lissa": {"scale": -1}}, "synthetic.lissa.scale"),
        ({"lissa": {"variant": "bogus"}}, "synthetic.lissa.variant"),
        ({"lissa": {"depth": 3}}, "synthetic.lissa"),
        ({"gmres": {"restart": 0}}, "synthetic.gmres.restart"),
        ({"rrinf": {"lr": 0}}, "synthetic.rrinf.lr"),
        ({"table": {"iteration": 41}}, "synthetic.table.iteration"),
        ({"table": {"n_samples": 999}}, "synthetic.table.n_samples"),
        ({"table": {"distribution": "uniform_0_1"}}, "synthetic.table.distribution"),
        ({"threads": 0}, "synthetic.threads"),
        ({"dimz": [512]}, "synthetic.dimz"),
    ],
)
def test_bad_input_names_the_key(given, key):
    with pytest.raises(ConfigError) as info:
        validate_config(given)
    assert info.value.key == key
    message = str(info.value)
    assert message.startswith(f"config key '{key}'") and "\n" not in message


def test_not_a_mapping():
    with pytest.raises(ConfigError) as info:
        validate_config([1, 2])
    assert info.value.key == "synthetic"


def test_solver_names():
    assert sor_omega("sor_1.5") == (1.5, False) and sor_omega("sor_eq26_0.5") == (0.5, True)
    assert sor_omega("cg") is None and is_known_solver("rrinf_sgd") and not is_known_solver("sor_x")


def test_cell_params_exclude_presentation_settings():
    params = cell_params(validate_config({}))
    assert "table" not in params and "threads" not in params and "converged_rtol" not in params
    assert params["damping"] == 0.01 and params["solvers"]
