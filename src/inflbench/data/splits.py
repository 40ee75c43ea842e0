"""Stratified train/val/test tables of a task with a fraction of the training labels flipped.

Each split is a table with columns ``id, <record fields>, label, clean_label, flipped``; only the training
split has flipped labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from inflbench.data.base import load_pools
from inflbench.errors import DataError


def check_pool(labels, need: int, what: str) -> None:
    """A pool to draw ``need`` samples from: large enough, and more than one class (else label flips and
    detection scores are meaningless)."""
    if need > len(labels):
        raise DataError(f"{what}: asked for {need} samples but only {len(labels)} are available")
    classes = np.unique(np.asarray(labels))
    if len(classes) < 2:
        raise DataError(f"{what}: every row has label {classes[0]}; a classification task needs at least 2 classes")


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


def plan_sizes(data_cfg: dict, n_pool: int, n_test_pool: int, task: str) -> pd.DataFrame:
    """Sizes drawn per split: one row per split with its pool, the pool's size, requested and used counts.

    Train (and val unless ``validation_from: dev``) come from the train pool, test (and val with ``dev``) from
    the test pool; with ``cap_sizes`` a pool's requests are scaled down together to fit it."""
    sizes, cap = data_cfg["sizes"], data_cfg.get("cap_sizes", False)
    val_pool = "dev" if data_cfg.get("validation_from", "train") == "dev" else "train"
    rows = []
    for pool, available, splits in (("train", n_pool, ["train"] + ["val"] * (val_pool == "train")),
                                    ("dev", n_test_pool, ["val"] * (val_pool == "dev") + ["test"])):
        asked = sum(sizes[s] for s in splits)
        if asked > available and not cap:
            raise DataError(f"{task} {pool} pool: asked for {asked} samples but only {available} are available "
                            f"({' + '.join(splits)}; data.cap_sizes: true scales the sizes down)")
        rows += [{"task": task, "split": s, "pool": pool, "pool_size": available, "requested": sizes[s],
                  "used": max(1, sizes[s] * min(available, asked) // asked)} for s in splits]
    return pd.DataFrame(rows).set_index("split").loc[["train", "val", "test"]].reset_index()


def prepare_splits(data_cfg: dict, task: str, seed: int, plan: list | None = None) -> dict[str, pd.DataFrame]:
    """Stratified train/val/test tables of one task with ``noise_fraction`` of training labels flipped;
    ``plan`` (a list) receives the sizes table of :func:`plan_sizes`."""
    rng = np.random.default_rng(seed)
    trainval, test_pool = load_pools(data_cfg, task, seed)
    sizes_table = plan_sizes(data_cfg, len(trainval), len(test_pool), task)
    sizes = dict(zip(sizes_table["split"], sizes_table["used"]))
    val_from_dev = data_cfg.get("validation_from", "train") == "dev"
    if plan is not None:
        plan.append(sizes_table)
    tv_labels = np.array([r["label"] for r in trainval])
    test_labels = np.array([r["label"] for r in test_pool])
    # the validation split shares its pool's stratified sample, then is split off again stratified
    shared, others = (test_labels, "test") if val_from_dev else (tv_labels, "train")
    pool = test_pool if val_from_dev else trainval
    idx = _stratified_take(shared, sizes[others] + sizes["val"], rng, f"{task} {others} pool")
    val_local = _stratified_take(shared[idx], sizes["val"], rng, f"{task} validation")
    val_mask = np.zeros(len(idx), dtype=bool)
    val_mask[val_local] = True
    chosen = {others: [pool[i] for i in idx[~val_mask]], "val": [pool[i] for i in idx[val_mask]]}
    if val_from_dev:
        chosen["train"] = [trainval[i] for i in _stratified_take(tv_labels, sizes["train"], rng, f"{task} train pool")]
    else:
        chosen["test"] = [test_pool[i] for i in _stratified_take(test_labels, sizes["test"], rng, f"{task} test pool")]
    chosen = {s: chosen[s] for s in ("train", "val", "test")}
    num_classes = int(max(tv_labels.max(), test_labels.max()) + 1)
    tables = {}
    for split, records in chosen.items():
        frame = pd.DataFrame({
            "id": np.arange(len(records)),
            **{field: [r.get(field) for r in records] for field in _fields(records)},
            "clean_label": np.array([r["label"] for r in records], dtype=np.int64),
        })
        frame["label"] = frame["clean_label"]
        if data_cfg["noise_fraction"] > 0 and frame["clean_label"].nunique() < 2:
            raise DataError(f"{task} {split} split: all {len(frame)} samples have label {frame['clean_label'].iloc[0]}; "
                            "flipped labels need at least 2 classes per split (larger sizes or a balanced source)")
        if split == "train" and data_cfg["noise_fraction"] > 0:
            frame["label"] = flip_labels(frame["clean_label"].to_numpy(), data_cfg["noise_fraction"], num_classes, rng)
        frame["flipped"] = frame["label"] != frame["clean_label"]
        tables[split] = frame[["id", *_fields(records), "label", "clean_label", "flipped"]]
    return tables


def _fields(records: list[dict]) -> list[str]:
    """Record fields other than the label, in first-seen order."""
    return list(dict.fromkeys(k for r in records[:1] for k in r if k != "label"))
