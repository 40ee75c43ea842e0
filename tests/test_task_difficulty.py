"""benchmarks/task_difficulty.py: the three training sets and one tiny run of its fine-tunes."""

import copy
import importlib.util

import numpy as np
import pandas as pd
import torch
import yaml

from common import ROOT
from inflbench.checks import merge_overlay
from inflbench.config import validate_config

spec = importlib.util.spec_from_file_location("task_difficulty", ROOT / "benchmarks" / "task_difficulty.py")
task_difficulty = importlib.util.module_from_spec(spec)
spec.loader.exec_module(task_difficulty)


def test_variants_relabel_and_drop_the_flips():
    train = pd.DataFrame({"text_a": list("abcd"), "label": [1, 0, 0, 1], "clean_label": [0, 0, 0, 1],
                          "flipped": [True, False, False, False]})
    sets = task_difficulty.variants(train)
    assert sets["clean"]["label"].tolist() == [0, 0, 0, 1]
    assert sets["noisy"]["label"].tolist() == [1, 0, 0, 1]
    assert sets["oracle"]["text_a"].tolist() == ["b", "c", "d"] and sets["oracle"].index.tolist() == [0, 1, 2]


def test_difficulty_rows_on_the_test_profile():
    raw = merge_overlay(yaml.safe_load((ROOT / "config.yaml").read_text()),
                        yaml.safe_load((ROOT / "configs" / "test.yaml").read_text()))
    raw["data"]["sizes"] = {"train": 20, "val": 8, "test": 8}
    cfg = validate_config(copy.deepcopy(raw))
    seen = []
    frame = task_difficulty.difficulty_rows(cfg, [0], torch.device("cpu"), seen.append)
    assert frame["train"].tolist() == ["clean", "noisy", "oracle"] and len(seen) == 3
    # noise_fraction 0.2 of 20 samples: 4 flips, so the oracle set keeps 16
    assert frame["n_train"].tolist() == [20, 20, 16]
    assert frame["best_epoch"].isin([0, 1]).all()  # one epoch in the test profile (0: before training)
    # accuracy on 8 test samples: a multiple of 1/8
    acc = frame["test_accuracy"].to_numpy()
    assert ((acc >= 0) & (acc <= 1)).all() and np.allclose(acc * 8, np.round(acc * 8))
