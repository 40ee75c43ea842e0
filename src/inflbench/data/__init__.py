"""Data stage: load a task from one of the sources, make stratified splits, flip training labels.

Sources (``data.source``): ``generated`` (offline), ``glue_dir`` (official GLUE TSV layout), ``hub``
(``datasets.load_dataset("glue", ...)``). Each split is a table with columns
``id, text_a, text_b, label, clean_label, flipped``; only the training split has flipped labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from inflbench.data.generated import generate_sentiment
from inflbench.data.glue import GLUE_TASKS, glue_files, load_glue_dir, load_glue_hub, read_glue_tsv
from inflbench.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


class DataSource:
    """One way of obtaining a task's records. Subclass, then add it to ``SOURCES``.

    Records are dicts with at least ``label`` (int class); text tasks use ``text_a``/``text_b``, other
    families add their own fields (they end up as CSV columns of the split tables).
    Source-specific settings live in ``data.options`` and are checked by ``check``.
    """

    def check(self, data_cfg: dict) -> None:
        """Cheap pre-run validation; raise ConfigError/DataError naming the key or file."""

    def load_pools(self, data_cfg: dict, task: str, seed: int) -> tuple[list[dict], list[dict]]:
        """(pool that train and val are drawn from, pool that test is drawn from)."""
        raise NotImplementedError


class GeneratedSource(DataSource):
    def check(self, data_cfg):
        for task in data_cfg["tasks"]:
            if task != "generated":
                raise ConfigError("data.tasks", f"source 'generated' provides the task 'generated', not {task!r}")

    def load_pools(self, data_cfg, task, seed):
        sizes = data_cfg["sizes"]
        n = sizes["train"] + sizes["val"] + sizes["test"]
        records = generate_sentiment(n, seed=seed, ambiguity=data_cfg.get("generated", {}).get("ambiguity", 0.15))
        cut = sizes["train"] + sizes["val"]
        return records[:cut], records[cut:]


class GlueSource(DataSource):
    def __init__(self, local: bool):
        self.local = local

    def check(self, data_cfg):
        for task in data_cfg["tasks"]:
            if task not in GLUE_TASKS:
                raise ConfigError("data.tasks", f"unknown GLUE task {task!r}; choose from {list(GLUE_TASKS)}")
            if self.local:
                if not data_cfg.get("glue_dir"):
                    raise ConfigError("data.glue_dir", "must be set when data.source is 'glue_dir'")
                self._pools(data_cfg, task)  # parses every row: a malformed one fails here, before any job

    def _pools(self, data_cfg, task):
        raw = load_glue_dir(data_cfg["glue_dir"], task) if self.local else load_glue_hub(task)
        sizes = data_cfg["sizes"]
        need = {"train": sizes["train"] + sizes["val"], "dev": sizes["test"]}
        where = glue_files(data_cfg["glue_dir"], task) if self.local else {k: f"GLUE {task} {k} (hub)" for k in need}
        for split, records in raw.items():
            check_pool(np.array([r["label"] for r in records]), need[split], str(where[split]))
        return raw["train"], raw["dev"]

    def load_pools(self, data_cfg, task, seed):
        return self._pools(data_cfg, task)


from inflbench.data.digits import DigitsSource, DreamBoothSource, StyleSource  # noqa: E402  (identification, #6)
from inflbench.data.lm_generated import LMGeneratedSource  # noqa: E402  (identification, #6)
from inflbench.data.svamp import SvampSource  # noqa: E402  (identification, #6)

SOURCES: dict[str, DataSource] = {
    "generated": GeneratedSource(),
    "glue_dir": GlueSource(local=True),
    "hub": GlueSource(local=False),
    "svamp": SvampSource(),
    "lm_generated": LMGeneratedSource(),
    "digits": DigitsSource(),
    "image_styles": StyleSource(),
    "dreambooth": DreamBoothSource(),
}


def get_source(name: str) -> DataSource:
    if name not in SOURCES:
        raise ConfigError("data.source", f"unknown source {name!r}; choose one of {list(SOURCES)}")
    return SOURCES[name]


def check_sources(data_cfg: dict) -> None:
    """Cheap, pre-run checks of the data config and files (raise ConfigError/DataError with one line)."""
    get_source(data_cfg["source"]).check(data_cfg)


def load_pools(data_cfg: dict, task: str, seed: int) -> tuple[list[dict], list[dict]]:
    return get_source(data_cfg["source"]).load_pools(data_cfg, task, seed)


def check_pool(labels: np.ndarray, need: int, what: str) -> None:
    """A pool to draw ``need`` samples from: large enough, and more than one class (else label flips and
    detection scores are meaningless)."""
    if need > len(labels):
        raise DataError(f"{what}: asked for {need} samples but only {len(labels)} are available")
    classes = np.unique(labels)
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


def write_splits(tables: dict[str, pd.DataFrame], outputs: dict[str, str]) -> None:
    for split, frame in tables.items():
        Path(outputs[split]).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(outputs[split], index=False)


def read_split(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(path, keep_default_na=False, na_values={"text_b": [""]})
    if "text_b" in frame:
        frame["text_b"] = frame["text_b"].astype(object).where(frame["text_b"].notna(), None)
    return frame
