"""Method x group ensembles (layers.ensembles): stage output against explicit column loops; selectors; config."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from common import ROOT
from inflbench.config import load_config_file, validate_config
from inflbench.errors import ConfigError
from inflbench.studies.layer_choice.stages import keep_mask, selectors, stage_ensemble, stage_mask
from inflbench.artifacts import save_scores

BLOCKS = ["bert.encoder.layer.0.attention.self.query.lora_A", "bert.encoder.layer.1.attention.self.value.lora_B",
          "classifier"]
GROUPS = {"A": [r"layer\.0\."], "B": [r"layer\.1\.", "^classifier"]}
LAY = {"aggregations": ["mean", "rank", "vote"], "vote_k": 4, "filter_fraction": 0.25, "ndr_points": 5,
       "ensembles": {"E": {"methods": ["m1", "m2"], "groups": ["A", "B"]}, "F": {"methods": ["m2"], "groups": ["A", "B"]}}}


def _columns(scores, ens, correct, use_correct):
    """Explicit loop: method -> group -> matching block (file order) -> validation sample."""
    cols = []
    for m in ens["methods"]:
        for g in ens["groups"]:
            for b in BLOCKS:
                if any(__import__("re").search(p, b) for p in GROUPS[g]):
                    for j in range(len(correct)):
                        if correct[j] or not use_correct:
                            cols.append(scores[m][b][:, j])
    return np.stack(cols, 1)


def _rank(cols):
    n, k = cols.shape
    return np.array([np.mean([1 + (cols[:, j] < cols[i, j]).sum() + ((cols[:, j] == cols[i, j]).sum() - 1) / 2
                              for j in range(k)]) for i in range(n)])


def _vote(cols, k):
    return np.array([sum(max(k - (cols[:, j] > cols[i, j]).sum(), 0) for j in range(cols.shape[1]))
                     for i in range(cols.shape[0])], float)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    n, m = 12, 5
    scores, paths = {}, {}
    for meth, scale in (("m1", 1.0), ("m2", 100.0)):
        scores[meth] = {b: scale * rng.integers(-3, 4, size=(n, m)).astype(float) for b in BLOCKS}  # ties
        paths[meth] = str(tmp_path / f"{meth}.safetensors")
        save_scores(paths[meth], {b: torch.tensor(v) for b, v in scores[meth].items()}, {"method": meth})
    flipped = np.zeros(n, bool)
    flipped[[1, 4, 7]] = True
    pd.DataFrame({"id": np.arange(100, 100 + n), "flipped": flipped}).to_csv(tmp_path / "train.csv", index=False)
    correct = np.array([1, 0, 1, 1, 0], bool)
    pd.DataFrame({"correct": correct}).to_csv(tmp_path / "pred.csv", index=False)
    out = {k: str(tmp_path / f"ens_{k}.csv") for k in ("scores", "ndr", "curve", "deciles")}
    stage_ensemble({"scores": list(paths.values()), "train": str(tmp_path / "train.csv"),
                    "predictions": str(tmp_path / "pred.csv")}, out,
                   {"methods": list(paths), "groups": GROUPS, "layers": LAY, "task": "t"})
    return scores, flipped, correct, out, tmp_path


def test_ensemble_scores_match_explicit_columns(files):
    scores, flipped, correct, out, _ = files
    table = pd.read_csv(out["scores"])
    assert list(table["id"]) == list(range(100, 112))
    for name, ens in LAY["ensembles"].items():
        mean_cols = _columns(scores, ens, correct, False)
        cols = _columns(scores, ens, correct, True)
        assert mean_cols.shape[1] == len(ens["methods"]) * 3 * 5 and cols.shape[1] == len(ens["methods"]) * 3 * 3
        np.testing.assert_allclose(table[f"{name}|mean"], mean_cols.mean(1))
        np.testing.assert_allclose(table[f"{name}|rank"], _rank(cols))
        np.testing.assert_allclose(table[f"{name}|vote"], _vote(cols, 4))
    # m2 is 100x larger: the mean is dominated by it, ranks are not (scale-free per column)
    assert not np.allclose(table["E|rank"], table["F|rank"])


def test_ensemble_ndr_rows(files):
    _, flipped, _, out, _ = files
    table, ndr = pd.read_csv(out["scores"]), pd.read_csv(out["ndr"])
    assert set(ndr["method"]) == {"ensemble"} and set(zip(ndr["group"], ndr["agg"])) == {
        (e, a) for e in ("E", "F") for a in ("mean", "rank", "vote")}
    row = ndr[(ndr["group"] == "E") & (ndr["agg"] == "vote")].iloc[0]
    top = np.argsort(-table["E|vote"].to_numpy(), kind="stable")[:3]  # round(0.25 * 12)
    assert row["ndr"] == pytest.approx(flipped[top].mean())
    assert row["n_blocks"] == 6 and row["n_val_used"] == 3


def test_ensemble_selector_and_mask(files):
    _, flipped, _, out, tmp_path = files
    lay = {"filter_fraction": 0.25, "methods": ["m1"], "groups": {"A": []}, "aggregations": ["vote"],
           "baselines": [], "selection_keep": [], "logo_groups": 0, "retrain_seeds": [0],
           "selection_aggregation": "vote", "selection_groups": [], "ensembles": LAY["ensembles"]}
    sel = selectors(lay)
    assert set(sel) == {"filter/m1/A/vote", "filter/ensemble/E/vote", "filter/ensemble/F/vote"}
    spec = sel["filter/ensemble/E/vote"]
    assert spec == {"kind": "filter", "method": "ensemble", "group": "E", "agg": "vote", "fraction": 0.25,
                    "seeds": [0]}
    stage_mask({"scores": out["scores"], "train": str(tmp_path / "train.csv")}, {"mask": str(tmp_path / "mask.csv")},
               {"spec": spec, "seed": "0"})
    kept = set(pd.read_csv(tmp_path / "mask.csv")["id"])
    expected = keep_mask(spec, pd.read_csv(out["scores"])["E|vote"].to_numpy(), flipped, 0)
    assert kept == set(np.arange(100, 112)[expected]) and len(kept) == 9


def _cfg(**layers):
    cfg = load_config_file(ROOT / "config.yaml")
    cfg["synthetic"] = {}
    cfg["layers"] = {"enabled": True, "methods": ["tracin"],
                     "groups": {"L0-2": [r"layer\.[0-2]\."], "CL": ["^classifier"]}, **layers}
    return cfg


def test_valid_ensemble_config():
    lay = validate_config(_cfg(ensembles={"TC": {"methods": ["tracin", "cosine"], "groups": ["L0-2", "all"]}}))["layers"]
    assert "filter/ensemble/TC/mean" in selectors(lay)


@pytest.mark.parametrize("ens, key", [
    ({"a b": {"methods": ["tracin"], "groups": ["L0-2", "CL"]}}, "layers.ensembles.a b"),
    ({"E": {"methods": ["nope", "tracin"], "groups": ["CL"]}}, "layers.ensembles.E.methods"),
    ({"E": {"methods": ["tracin"], "groups": ["CL", "nope"]}}, "layers.ensembles.E.groups"),
    ({"E": {"methods": ["tracin"], "groups": ["CL"]}}, "layers.ensembles.E"),
    ({"E": {"methods": ["tracin"]}}, "layers.ensembles.E"),
    ({"E": {"methods": ["tracin"], "groups": ["CL"], "x": 1}}, "layers.ensembles.E.x"),
])
def test_bad_ensemble_fails_with_key(ens, key):
    with pytest.raises(ConfigError) as info:
        validate_config(_cfg(ensembles=copy.deepcopy(ens)))
    assert info.value.key == key and "\n" not in str(info.value)


def test_groups_by_model_and_missing_groups():
    cfg = _cfg()
    del cfg["layers"]["groups"]
    cfg["layers"]["groups_by_model"] = {cfg["model"]["name_or_path"]: {"X": [r"layer\.4\."]}}
    assert validate_config(cfg)["layers"]["groups"] == {"X": [r"layer\.4\."]}
    cfg["layers"]["groups_by_model"] = {"other-model": {"X": ["."]}}
    with pytest.raises(ConfigError, match="no groups for model") as info:
        validate_config(cfg)
    assert info.value.key == "layers.groups"
