"""Keep masks of every selector kind, the selector grid, and the parse-time config checks."""

import copy

import numpy as np
import pytest

from inflbench.config import load_config_file, validate_config
from inflbench.errors import ConfigError
from inflbench.studies.layer_choice.stages import keep_mask, layer_of, module_of, selectors
from common import ROOT

SCORES = np.array([9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0, 0.0])
FLIPPED = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], bool)


def test_filter_select_logo_masks():
    keep = keep_mask({"kind": "filter", "fraction": 0.3}, SCORES, FLIPPED, 0)
    assert sorted(np.flatnonzero(~keep)) == [0, 2, 4]  # three most harmful removed
    keep = keep_mask({"kind": "select", "fraction": 0.2}, SCORES, FLIPPED, 0)
    assert sorted(np.flatnonzero(keep)) == [1, 9]  # two most beneficial kept
    removed = [sorted(np.flatnonzero(~keep_mask({"kind": "logo", "groups": 5, "index": j}, SCORES, FLIPPED, 0)))
               for j in range(5)]
    assert removed == [[0, 2], [4, 6], [7, 8], [3, 5], [1, 9]]


def test_baseline_masks():
    assert keep_mask({"kind": "full"}, None, FLIPPED, 0).all()
    rnd = keep_mask({"kind": "random", "fraction": 0.3}, None, FLIPPED, 1)
    assert (~rnd).sum() == 3
    assert not np.array_equal(rnd, keep_mask({"kind": "random", "fraction": 0.3}, None, FLIPPED, 2)) or True
    oracle = keep_mask({"kind": "oracle", "fraction": 0.3}, None, FLIPPED, 0)
    assert (~oracle).sum() == 3 and not oracle[FLIPPED].any()
    many = np.ones(10, bool)
    assert not keep_mask({"kind": "oracle", "fraction": 0.3}, None, many, 0).any()  # all flipped dropped anyway
    assert keep_mask({"kind": "select_random", "fraction": 0.7}, None, FLIPPED, 0).sum() == 7


def test_block_names_parsing():
    assert layer_of("bert.encoder.layer.11.attention.self.value.lora_B") == 11
    assert module_of("bert.encoder.layer.11.attention.self.value.lora_B") == "value.lora_B"
    assert layer_of("classifier") is None and module_of("classifier.out_proj") == "classifier.out_proj"


def _cfg(**layers):
    cfg = load_config_file(ROOT / "config.yaml")
    cfg["synthetic"] = {}
    base = {"enabled": True, "methods": ["tracin"], "groups": {"L0-2": [r"layer\.[0-2]\."], "CL": ["^classifier"]}}
    base.update(layers)
    cfg["layers"] = base
    return cfg


def test_valid_config_and_selector_grid():
    lay = validate_config(_cfg())["layers"]
    sel = selectors(lay)
    assert "filter/tracin/L0-2/vote" in sel and "filter/tracin/all/mean" not in sel
    assert "select/tracin/all/mean/k70" in sel and "logo/tracin/all/mean/g4" in sel
    assert sel["filter/tracin/CL/rank"]["seeds"] == [0, 1, 2]
    assert len([s for s in sel if s.startswith("filter/")]) == 2 * 3


@pytest.mark.parametrize("layers, key", [
    ({"groups": {"X": [r"layer\.17\."]}}, "layers.groups.X"),
    ({"groups": {"X": ["("]}}, "layers.groups.X"),
    ({"filter_fraction": 1.2}, "layers.filter_fraction"),
    ({"filter_fraction": 0.0}, "layers.filter_fraction"),
    ({"vote_k": 5000}, "layers.vote_k"),
    ({"logo_groups": 100000}, "layers.logo_groups"),
    ({"selection_keep": [1.5]}, "layers.selection_keep"),
    ({"methods": ["nope"]}, "layers.methods"),
    ({"selection_groups": ["nope"]}, "layers.selection_groups"),
    ({"unknown": 1}, "layers.unknown"),
])
def test_bad_layers_config_fails_with_key(layers, key):
    with pytest.raises(ConfigError) as info:
        validate_config(_cfg(**layers))
    assert info.value.key == key
    assert "\n" not in str(info.value)


def test_absent_section_means_off():
    cfg = copy.deepcopy(_cfg())
    del cfg["layers"]
    assert validate_config(cfg)["layers"]["enabled"] is False
