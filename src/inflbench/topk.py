"""The training examples a method flags: per (task, method) the k most harmful and the k most helpful
training samples with their text, given label, clean label, flip flag and score (mean influence over the
target samples; positive = harmful)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from inflbench.artifacts import read_score_ids, read_split, train_sample_scores, write_table

NON_TEXT = ("id", "label", "clean_label", "flipped", "class_name")
COLUMNS = ["kind", "rank", "id", "text", "label", "clean_label", "flipped", "score"]


def example_text(train: pd.DataFrame) -> pd.Series:
    """The record fields of each sample (text, text_b, prompt ...) joined with ' || '."""
    fields = [c for c in train.columns if c not in NON_TEXT]
    return train[fields].apply(lambda r: " || ".join(str(v) for v in r if v is not None and str(v) != ""), axis=1)


def top_examples(train: pd.DataFrame, scores: np.ndarray, k: int) -> pd.DataFrame:
    """``k`` highest-scoring (harmful) then ``k`` lowest-scoring (helpful) rows of ``train``."""
    scores = np.asarray(scores, float)
    if len(scores) != len(train):
        raise ValueError(f"{len(scores)} scores for {len(train)} training samples")
    order = np.argsort(-scores, kind="stable")
    k = min(int(k), len(train))
    parts = []
    for kind, idx in (("harmful", order[:k]), ("helpful", order[::-1][:k])):
        part = train.iloc[idx].assign(kind=kind, rank=np.arange(1, k + 1), score=scores[idx])
        part["text"] = example_text(train).iloc[idx].to_numpy()
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    extra = ["class_name"] if "class_name" in frame else []  # identification: the class of each example
    return frame[COLUMNS[:5] + extra + COLUMNS[5:]]


def topk_table(scores_path: str | Path, train_path: str | Path, k: int) -> pd.DataFrame:
    train = read_split(train_path)
    ids = read_score_ids(scores_path).get("train")
    if ids is not None and [int(i) for i in ids] != train["id"].astype(int).tolist():
        raise ValueError(f"{scores_path}: its train sample ids differ from those of {train_path}")
    return top_examples(train, train_sample_scores(scores_path), k)


def stage_topk(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs scores, train; params k, task, method -> outputs table (CSV)."""
    frame = topk_table(inputs["scores"], inputs["train"], params["k"])
    write_table(frame, outputs["table"], {"task": params["task"], "method": params["method"], "k": params["k"]})
