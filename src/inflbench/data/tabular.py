"""Bring your own data: a local CSV / TSV / JSONL file per task (``data.source: file``) or a Hugging Face
dataset per task (``data.source: hf_dataset``), with configurable text and label columns. Both give records
``{text_a, text_b, label[, class_name]}`` to the same stratified splitting and label noise as every source.

Options (``data.options``)::

    files: {<task>: path}            # file source: CSV/TSV (by suffix) or JSONL; the train/val pool
    test_files: {<task>: path}       # optional: the test pool (otherwise test_fraction of the file, seeded)
    datasets: {<task>: {path: imdb, name: null, train_split: train, test_split: test}}   # hf_dataset source
    text_column: text                # text_b_column: second text of a pair (optional)
    label_column: label              # integers, or class names (numbered in sorted order, or as in `labels`)
    labels: [neg, pos]               # optional class-name order
    test_fraction: 0.2
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from inflbench.data.balanced import check_options
from inflbench.data.base import DataSource, register_source
from inflbench.errors import ConfigError, DataError
from inflbench.schemas import resolve_options

def _options(data_cfg: dict) -> dict:
    """``data.options`` with the defaults of schemas/data_options/<source>.schema.yaml."""
    return resolve_options("data", data_cfg["source"], data_cfg.get("options"))


def _per_task(data_cfg: dict, key: str, source: str) -> dict:
    mapping = (data_cfg.get("options") or {}).get(key) or {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"data.options.{key}", "must map each task name to its entry")
    for task in data_cfg["tasks"]:
        if task not in mapping:
            raise ConfigError("data.tasks", f"source {source!r} has no data.options.{key} entry for task "
                                            f"{task!r} (given: {sorted(mapping)})")
    return mapping


def label_codes(values: list, labels: list | None, where: str) -> tuple[list[int], dict[int, str] | None]:
    """Integer classes of ``values`` and, for class names, code -> name (sorted names or ``labels`` order)."""
    if labels is None and all(isinstance(v, (int, np.integer)) or str(v).lstrip("-").isdigit() for v in values):
        return [int(v) for v in values], None
    names = [str(v) for v in labels] if labels is not None else sorted({str(v) for v in values})
    unknown = sorted({str(v) for v in values} - set(names))
    if unknown:
        raise DataError(f"{where}: label {unknown[0]!r} is not one of {names}")
    code = {name: i for i, name in enumerate(names)}
    return [code[str(v)] for v in values], dict(enumerate(names))


def _columns(frame: pd.DataFrame, options: dict, where: str) -> list[str]:
    cols = [options["text_column"], options["label_column"]] + ([options["text_b_column"]]
                                                                if options["text_b_column"] else [])
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: no column {missing[0]!r} (columns: {list(frame.columns)}); "
                        "set data.options.text_column / label_column")
    if frame[cols].isna().any().any():
        raise DataError(f"{where}: empty values in {cols}")
    return cols


def to_records(frame: pd.DataFrame, options: dict, where: str, names: dict[int, str] | None) -> list[dict]:
    """Rows -> records; ``names`` (code -> class name, for class-name labels) adds a ``class_name`` field."""
    _columns(frame, options, where)
    labels, _ = label_codes(frame[options["label_column"]].tolist(),
                            options["labels"] if names is None else list(names.values()), where)
    text_b = frame[options["text_b_column"]].astype(str) if options["text_b_column"] else [None] * len(frame)
    records = [{"text_a": str(a), "text_b": b, "label": y}
               for a, b, y in zip(frame[options["text_column"]], text_b, labels)]
    if names:
        for r in records:
            r["class_name"] = names[r["label"]]
    return records


def pools(train: pd.DataFrame, test: pd.DataFrame | None, options: dict, where: str, seed: int):
    """(train/val pool, test pool): ``test`` when given, else a seeded ``test_fraction`` of ``train``."""
    frames = [(train, where)] + ([] if test is None else [(test, f"{where} (test)")])
    for frame, at in frames:
        _columns(frame, options, at)
    values = [v for frame, _ in frames for v in frame[options["label_column"]].tolist()]
    names = label_codes(values, options["labels"], where)[1]  # one numbering for both files
    records = to_records(train, options, where, names)
    if test is not None:
        return records, to_records(test, options, f"{where} (test)", names)
    order = np.random.default_rng(seed).permutation(len(records))
    cut = int(round(options["test_fraction"] * len(records)))
    return [records[i] for i in sorted(order[cut:])], [records[i] for i in sorted(order[:cut])]


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    try:
        if path.suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=path.suffix == ".jsonl")
        return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", keep_default_na=False,
                           na_values={""})
    except ValueError as exc:
        raise DataError(f"{path}: cannot parse ({exc})") from None


@register_source("file")
class FileSource(DataSource):
    """``data.source: file``: one local CSV / TSV / JSONL file per task (``data.options.files``)."""

    def check(self, data_cfg):
        files = _per_task(data_cfg, "files", "file")
        options = _options(data_cfg)
        tests = options.get("test_files") or {}
        for task in data_cfg["tasks"]:
            pools(read_table(files[task]), read_table(tests[task]) if task in tests else None, options,
                  str(files[task]), 0)

    def load_pools(self, data_cfg, task, seed):
        options = _options(data_cfg)
        path, test = options["files"][task], (options.get("test_files") or {}).get(task)
        return pools(read_table(path), read_table(test) if test else None, options, str(path), seed)


@register_source("hf_dataset")
class HubDatasetSource(DataSource):
    """``data.source: hf_dataset``: ``datasets.load_dataset`` per task (``data.options.datasets``)."""

    def check(self, data_cfg):
        specs = _per_task(data_cfg, "datasets", "hf_dataset")
        _options(data_cfg)
        for task in data_cfg["tasks"]:
            spec = specs[task]
            if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
                raise ConfigError(f"data.options.datasets.{task}", "needs {path: <dataset name or folder>}")
            check_options(f"data.options.datasets.{task}", spec, ("path", "name", "train_split", "test_split"))

    def load_pools(self, data_cfg, task, seed):
        try:
            import datasets
        except ImportError:
            raise ConfigError("data.source", "hf_dataset needs the datasets package: pip install 'inflbench[hub]'")
        options = _options(data_cfg)
        spec = options["datasets"][task]
        load = lambda split: datasets.load_dataset(spec["path"], spec.get("name"), split=split)  # noqa: E731
        train = pd.DataFrame(list(load(spec.get("train_split", "train"))))
        test_split = spec.get("test_split", "test")
        test = pd.DataFrame(list(load(test_split))) if test_split else None
        return pools(train, test, options, f"{spec['path']}:{task}", seed)
