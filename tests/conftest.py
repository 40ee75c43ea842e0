"""Shared fixtures: the offline MiniLM family and tiny generated splits (helpers live in common.py)."""

from __future__ import annotations

import pytest

import yaml

from common import MINILM, load_test_config, randomize_lora_b, snakemake


@pytest.fixture(scope="session")
def tiny_splits():
    from inflbench.data import prepare_splits

    cfg = {"source": "generated", "tasks": ["generated"], "sizes": {"train": 24, "val": 8, "test": 8},
           "noise_fraction": 0.25, "generated": {"ambiguity": 0.15}}
    return prepare_splits(cfg, "generated", seed=3)


@pytest.fixture(scope="session")
def minilm(tiny_splits):
    """(family, LoRA model in eval mode, encoded splits) of the real offline MiniLM."""
    from inflbench.models import get_family

    family = get_family(MINILM, num_labels=2)
    model = family.build(seed=0).eval()
    randomize_lora_b(model)
    encoded = {k: family.encode(v) for k, v in tiny_splits.items()}
    return family, model, encoded


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(workdir, Layout, config args) of one end-to-end run of configs/test.yaml, shared by the workflow tests
    and the kill-and-rerun test (its uninterrupted reference)."""
    from inflbench.paths import Layout

    config_dict = load_test_config()
    work = tmp_path_factory.mktemp("tiny")
    results = work / "results"
    config = work / "test.yaml"
    config.write_text(yaml.safe_dump(config_dict))
    args = ("--configfile", str(config), "--config", f"results_dir={results}")
    proc = snakemake("--cores", "2", *args, workdir=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, Layout(results, config_dict["run"]), args
