"""End-to-end: the layer study on the tiny test profile (1 seed, 1 method, the WE group, one method x group
ensemble with the layer-choice paper TracIn-WE top-10 variant) into a tmp results dir."""

import json

import pandas as pd
import pytest
import yaml

from common import ROOT, snakemake
from inflbench.methods.ekfac import kronfluence_available
from inflbench.paths import Layout

OVERLAY = {"gradients": {"word_embeddings": True}, "methods": {"tracin_we_top10": {}},
           "layers": {"enabled": True, "methods": ["tracin"], "groups": {"WE": ["word_embeddings"]},
                      "aggregations": ["mean", "vote"], "retrain_seeds": [0], "baselines": ["random"],
                      "selection_keep": [0.5], "logo_groups": 2,
                      "ensembles": {"TW": {"methods": ["tracin", "tracin_we_top10"], "groups": ["WE"]}}}}


def _snakemake(work, *args):
    return snakemake(*args, workdir=work)


def _test_profile(tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "test.yaml").read_text())
    if not kronfluence_available():
        cfg["methods"].pop("ekfac", None)
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.slow
def test_tiny_layer_study(tmp_path):
    overlay = tmp_path / "layers.yaml"
    overlay.write_text(yaml.safe_dump(OVERLAY))
    results = tmp_path / "results"
    profile = _test_profile(tmp_path)
    proc = _snakemake(tmp_path, "--cores", "2", "layers_tables", "layers_figures", "--configfile", profile,
                      str(overlay), "--config", f"results_dir={results}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    P = Layout(results, "test")
    index = json.loads(open(P.gradient_index(task="generated", split="train")).read())
    tokens = index["word_embeddings"]["token_ids"]
    assert index["blocks"]["bert.embeddings.word_embeddings"]["shape"] == [len(tokens), 384] and len(index["blocks"]) == 26
    runs = pd.read_csv(P.layer_table(table="runs"))
    assert set(runs["kind"]) == {"filter", "random", "full"}  # the filter table; selection/LOGO have their own
    assert sorted(runs.loc[runs["kind"] == "filter", "config"]) == [
        "ensemble|TW|mean", "ensemble|TW|vote", "tracin|WE|mean", "tracin|WE|vote"]
    assert len(list((results / "test").rglob("retrain/**/seed0.json"))) == 10
    assert runs["best_test_accuracy"].between(0, 1).all()
    ranking = pd.read_csv(P.layer_table(table="ranking"))
    assert {"tracin|WE|mean", "tracin|WE|vote", "ensemble|TW|mean", "ensemble|TW|vote", "Random"} <= set(ranking["config"])
    ndr = pd.read_csv(P.layer_table(table="ndr"))
    assert set(zip(ndr["method"], ndr["group"])) == {("tracin", "WE"), ("tracin", "all"), ("ensemble", "TW")}
    assert ndr["ndr"].between(0, 1).all() and (ndr.loc[ndr["method"] == "ensemble", "n_blocks"] == 2).all()
    assert len(pd.read_csv(P.layer_table(table="logo"))) == 1
    assert "Random" in pd.read_csv(P.layer_table(table="selection"))["method"].tolist()
    canc = pd.read_csv(P.layer_table(table="cancellation"))
    assert {"block", "group"} == set(canc["level"])
    for figure in ("accuracy", "ndr_blocks", "aggregation_change", "noise_deciles"):
        assert (results / "test" / "figures" / f"layers_{figure}.png").stat().st_size > 1000
    summary = json.loads(next((results / "test").rglob("retrain/filter/**/seed0.json")).read_text())
    assert summary["n_train"] == 48 - round(0.3 * 48)
    assert not list((results / "test").rglob("retrain/**/*.safetensors"))  # no retrain checkpoints
    # bad input fails before any job runs, with one line naming the key
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**OVERLAY, "layers": {**OVERLAY["layers"], "groups": {"X": [r"layer\.99\."]}}}))
    proc = _snakemake(tmp_path, "-n", "--configfile", profile, str(bad))
    assert proc.returncode != 0 and "config key 'layers.groups.X'" in proc.stdout + proc.stderr
    bad.write_text(yaml.safe_dump({**OVERLAY, "layers": {**OVERLAY["layers"],
                                                         "ensembles": {"TW": {"methods": ["tracin"], "groups": ["nope"]}}}}))
    proc = _snakemake(tmp_path, "-n", "--configfile", profile, str(bad))
    assert proc.returncode != 0 and "config key 'layers.ensembles.TW.groups'" in proc.stdout + proc.stderr
