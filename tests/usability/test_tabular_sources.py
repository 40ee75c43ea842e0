"""Bring your own data: a local CSV / JSONL file or a Hugging Face dataset, same splitting and noise."""

from __future__ import annotations

import sys
import types

import pandas as pd
import pytest

from inflbench.config import validate_config
from inflbench.data import SOURCES, prepare_splits
from inflbench.data.generated import generate_sentiment
from inflbench.errors import InputError

SIZES = {"train": 24, "val": 8, "test": 8}


def _cfg(source: str, options: dict, tasks=("reviews",)) -> dict:
    return {"source": source, "tasks": list(tasks), "sizes": dict(SIZES), "noise_fraction": 0.25,
            "options": options, "generated": {"ambiguity": 0.15}, "glue_dir": None}


def _generated_pools():
    """The generated source's own pools (as its load_pools cuts them)."""
    n = sum(SIZES.values())
    records = generate_sentiment(n, seed=3, ambiguity=0.15)
    cut = SIZES["train"] + SIZES["val"]
    return records[:cut], records[cut:]


def _write(records, path, names=None):
    frame = pd.DataFrame({"sentence": [r["text_a"] for r in records],
                          "y": [names[r["label"]] if names else r["label"] for r in records]})
    if str(path).endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_file_source_gives_the_same_splits_and_flips_as_the_generated_task(tmp_path, suffix):
    trainval, test = _generated_pools()
    options = {"files": {"reviews": _write(trainval, tmp_path / f"train{suffix}")},
               "test_files": {"reviews": _write(test, tmp_path / f"test{suffix}")},
               "text_column": "sentence", "label_column": "y"}
    ours = prepare_splits(_cfg("file", options), "reviews", seed=3)
    reference = prepare_splits(_cfg("generated", {}, tasks=["generated"]), "generated", seed=3)
    for split in ("train", "val", "test"):
        pd.testing.assert_frame_equal(ours[split], reference[split])
    assert ours["train"]["flipped"].sum() == 6


def test_class_names_are_numbered_in_sorted_order_and_kept(tmp_path):
    trainval, test = _generated_pools()
    options = {"files": {"reviews": _write(trainval + test, tmp_path / "all.csv", names=["negative", "positive"])},
               "text_column": "sentence", "label_column": "y", "test_fraction": 0.25}
    source = SOURCES["file"]
    source.check(_cfg("file", options))
    pool, held_out = source.load_pools(_cfg("file", options), "reviews", seed=0)
    assert len(pool) == 30 and len(held_out) == 10
    assert {(r["label"], r["class_name"]) for r in pool} == {(0, "negative"), (1, "positive")}
    assert source.load_pools(_cfg("file", options), "reviews", seed=0) == (pool, held_out)
    texts = {r["text_a"] for r in pool}
    assert not texts & {r["text_a"] for r in held_out}
    flipped = source.load_pools(_cfg("file", {**options, "labels": ["positive", "negative"]}), "reviews", seed=0)[0]
    assert [r["label"] for r in flipped] == [1 - r["label"] for r in pool]


@pytest.mark.parametrize("options, key", [
    ({"files": {"other": "x.csv"}}, "data.tasks"),
    ({"files": {"reviews": "missing.csv"}}, "missing.csv: no such data file"),
    ({"files": {"reviews": "{csv}"}, "text_column": "sentence"}, "no column 'label'"),
    ({"files": {"reviews": "{csv}"}, "text_column": "sentence", "label_column": "y", "labels": ["neg"]},
     "a.csv: label 'negative' is not one of"),
    ({"files": {"reviews": "{csv}"}, "test_fraction": 1.5}, "data.options.test_fraction"),
    ({"files": {"reviews": "{csv}"}, "text_colum": "x"}, "data.options.text_colum"),
])
def test_file_source_errors_name_the_key_or_file_before_any_job(tmp_path, options, key):
    csv = _write(_generated_pools()[0], tmp_path / "a.csv", names=["negative", "positive"])
    options = {k: ({t: p.format(csv=csv) for t, p in v.items()} if k == "files" else v) for k, v in options.items()}
    config = {"data": {"source": "file", "tasks": ["reviews"], "options": options}}
    with pytest.raises(InputError, match=key.replace("(", r"\(")):
        validate_config(config)


def test_hf_dataset_source_reads_the_configured_columns_offline(monkeypatch):
    trainval, test = _generated_pools()
    rows = {"train": [{"review": r["text_a"], "stars": r["label"]} for r in trainval],
            "test": [{"review": r["text_a"], "stars": r["label"]} for r in test]}
    calls = []

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return rows[split]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    options = {"datasets": {"reviews": {"path": "someone/reviews", "name": "plain"}},
               "text_column": "review", "label_column": "stars"}
    SOURCES["hf_dataset"].check(_cfg("hf_dataset", options))
    ours = prepare_splits(_cfg("hf_dataset", options), "reviews", seed=3)
    reference = prepare_splits(_cfg("generated", {}, tasks=["generated"]), "generated", seed=3)
    pd.testing.assert_frame_equal(ours["train"], reference["train"])
    assert calls == [("someone/reviews", "plain", "train"), ("someone/reviews", "plain", "test")]
    with pytest.raises(InputError, match="data.options.datasets.reviews"):
        SOURCES["hf_dataset"].check(_cfg("hf_dataset", {"datasets": {"reviews": {"name": "x"}}}))
