"""Methods that score only the whole model (RRInf couples blocks: its file holds just `total`) take part in
filtering, selection and LOGO with their one group `total`."""

import numpy as np
import pandas as pd
import pytest
import torch

from common import ROOT
from inflbench.artifacts import save_scores
from inflbench.config import load_config_file, validate_config
from inflbench.errors import ConfigError
from inflbench.studies.layer_choice.stages import TOTAL, keep_mask, selectors, stage_aggregate, stage_mask

LAY = {"aggregations": ["mean", "vote"], "vote_k": 3, "filter_fraction": 0.25, "ndr_points": 5}


def _cfg(**layers):
    cfg = load_config_file(ROOT / "config.yaml")
    cfg["synthetic"] = {}
    cfg["methods"] = {"tracin": {}, "rrinf_paper": {"method": "rrinf", "sampling": "neuron", "lr": 0.01}}
    cfg["layers"] = {"enabled": True, "methods": [], "groups": {"CL": ["^classifier"]}, **layers}
    return cfg


def test_total_only_selectors():
    lay = validate_config(_cfg())["layers"]
    assert lay["total_only"] == ["rrinf_paper"]
    sel = selectors(lay)
    assert {"filter/rrinf_paper/total/mean", "select/rrinf_paper/total/mean/k70",
            "logo/rrinf_paper/total/mean/g0"} <= set(sel)
    assert not [s for s in sel if s.startswith("filter/rrinf_paper/CL")]
    assert "filter/tracin/CL/mean" in sel and "filter/tracin/total/mean" not in sel


def test_total_only_method_cannot_join_an_ensemble():
    with pytest.raises(ConfigError, match=r"layers\.ensembles\.E\.methods.*'rrinf_paper' scores only the whole"):
        validate_config(_cfg(ensembles={"E": {"methods": ["tracin", "rrinf_paper"], "groups": ["CL"]}}))


def test_aggregate_and_masks_use_the_total(tmp_path):
    rng = np.random.default_rng(1)
    n, m = 16, 4
    total = rng.normal(size=(n, m))
    save_scores(tmp_path / "s.safetensors", {"total": torch.tensor(total)}, {"method": "rrinf"})
    flipped = np.zeros(n, bool)
    flipped[[0, 5, 9]] = True
    pd.DataFrame({"id": np.arange(n) + 50, "flipped": flipped}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"correct": [1, 1, 0, 1]}).to_csv(tmp_path / "pred.csv", index=False)
    out = {k: str(tmp_path / f"{k}.csv") for k in ("scores", "ndr", "curve", "deciles", "blocks")}
    stage_aggregate({"scores": str(tmp_path / "s.safetensors"), "train": str(tmp_path / "train.csv"),
                     "predictions": str(tmp_path / "pred.csv")}, out,
                    {"groups": {"CL": ["^classifier"]}, "layers": LAY, "method": "rrinf_paper", "task": "t"})
    table = pd.read_csv(out["scores"])
    np.testing.assert_allclose(table[f"{TOTAL}|mean"], total.mean(1))
    assert list(pd.read_csv(out["ndr"])["group"]) == [TOTAL, TOTAL]
    assert list(pd.read_csv(out["blocks"])["block"]) == ["total"]
    spec = {"kind": "select", "method": "rrinf_paper", "group": TOTAL, "agg": "mean", "fraction": 0.25}
    stage_mask({"scores": out["scores"], "train": str(tmp_path / "train.csv")},
               {"mask": str(tmp_path / "mask.csv")}, {"spec": spec, "seed": 0})
    kept = pd.read_csv(tmp_path / "mask.csv")["id"].to_numpy()
    expected = np.argsort(total.mean(1), kind="stable")[:4] + 50  # the four least harmful by the total
    assert sorted(kept) == sorted(expected)
    assert keep_mask({"kind": "logo", "groups": 4, "index": 0}, total.mean(1), flipped, 0).sum() == 12
