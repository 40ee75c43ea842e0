"""Stratified train/val/test tables of a task with a fraction of the training labels flipped.

Each split is a table with columns ``id, <record fields>, label, clean_label, flipped``; only the training
split has flipped labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from inflbench.data.base import load_pools
from inflbench.errors import DataError


def _stratified_take(labels: np.ndarray, k: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """Indices of ``k`` items with class proportions as in ``labels`` (largest remainder)."""
    if k > len(labels):
        raise DataError(f"{what}: asked for {k} samples but only {len(labels)} are available")
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts / counts.sum() * k
    take = np.floor(quota).astype(int)
    for c in np.argsort(-(quota - take))[: k - take.sum()]:
        take[c] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), size=t, replace=False) for c, t in zip(classes, take)]
    return rng.permutation(np.concatenate(chosen))


def flip_labels(labels: np.ndarray, fraction: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Noisy copy of ``labels``: exactly round(fraction·n) entries moved to a different random class."""
    noisy = labels.copy()
    n_flip = int(round(fraction * len(labels)))
    idx = rng.choice(len(labels), size=n_flip, replace=False)
    shift = rng.integers(1, num_classes, size=n_flip)
    noisy[idx] = (labels[idx] + shift) % num_classes
    return noisy


def prepare_splits(data_cfg: dict, task: str, seed: int) -> dict[str, pd.DataFrame]:
    """Stratified train/val/test tables of one task with ``noise_fraction`` of training labels flipped."""
    rng = np.random.default_rng(seed)
    trainval, test_pool = load_pools(data_cfg, task, seed)
    sizes = data_cfg["sizes"]
    tv_labels = np.array([r["label"] for r in trainval])
    idx = _stratified_take(tv_labels, sizes["train"] + sizes["val"], rng, f"{task} train pool")
    # split the stratified sample into train and val, again stratified
    val_local = _stratified_take(tv_labels[idx], sizes["val"], rng, f"{task} validation")
    val_mask = np.zeros(len(idx), dtype=bool)
    val_mask[val_local] = True
    test_labels = np.array([r["label"] for r in test_pool])
    chosen = {
        "train": [trainval[i] for i in idx[~val_mask]],
        "val": [trainval[i] for i in idx[val_mask]],
        "test": [test_pool[i] for i in _stratified_take(test_labels, sizes["test"], rng, f"{task} test pool")],
    }
    num_classes = int(max(tv_labels.max(), test_labels.max()) + 1)
    tables = {}
    for split, records in chosen.items():
        frame = pd.DataFrame({
            "id": np.arange(len(records)),
            **{field: [r.get(field) for r in records] for field in _fields(records)},
            "clean_label": np.array([r["label"] for r in records], dtype=np.int64),
        })
        frame["label"] = frame["clean_label"]
        if split == "train" and data_cfg["noise_fraction"] > 0:
            frame["label"] = flip_labels(frame["clean_label"].to_numpy(), data_cfg["noise_fraction"], num_classes, rng)
        frame["flipped"] = frame["label"] != frame["clean_label"]
        tables[split] = frame[["id", *_fields(records), "label", "clean_label", "flipped"]]
    return tables


def _fields(records: list[dict]) -> list[str]:
    """Record fields other than the label, in first-seen order."""
    return list(dict.fromkeys(k for r in records[:1] for k in r if k != "label"))
