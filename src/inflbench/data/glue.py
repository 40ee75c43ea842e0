"""GLUE readers: the official TSV layout (`glue_dir`) and the Hugging Face hub (`hub`).

Every task is reduced to records ``{"text_a", "text_b", "label"}`` with integer labels.
MNLI keeps only entailment (0) and neutral (1); STS-B scores are thresholded at 3 (layer-choice paper, App. A).
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from inflbench.data.base import DataSource, register_source
from inflbench.errors import ConfigError, DataError

csv.field_size_limit(sys.maxsize)


def _label_map(mapping: dict[str, int]) -> Callable[[str], int | None]:
    def convert(value: str) -> int | None:
        if value not in mapping:
            raise ValueError(f"label {value!r} is not one of {sorted(mapping)}")
        return mapping[value]

    return convert


def _int_label(value: str) -> int:
    if value not in ("0", "1"):
        raise ValueError(f"label {value!r} is not 0 or 1")
    return int(value)


def _mnli_label(value: str) -> int | None:
    if value not in ("entailment", "neutral", "contradiction"):
        raise ValueError(f"label {value!r} is not entailment/neutral/contradiction")
    return {"entailment": 0, "neutral": 1}.get(value)  # contradiction is dropped


def _stsb_label(value: str) -> int:
    return int(float(value) >= 3.0)


@dataclass(frozen=True)
class GlueLayout:
    """Where the text and label live in one GLUE task's TSV files."""

    text_a: str | int
    text_b: str | int | None
    label: str | int
    convert: Callable[[str], int | None]
    header: bool = True
    dev_file: str = "dev.tsv"
    num_columns: int | None = None  # for header-less files
    hub_name: str = ""
    hub_text: tuple[str, str | None] = ("sentence", None)
    hub_validation: str = "validation"


_ENTAIL = _label_map({"entailment": 0, "not_entailment": 1})

GLUE_TASKS: dict[str, GlueLayout] = {
    "SST-2": GlueLayout("sentence", None, "label", _int_label, hub_name="sst2"),
    "MRPC": GlueLayout("#1 String", "#2 String", "Quality", _int_label, hub_name="mrpc",
                       hub_text=("sentence1", "sentence2")),
    "RTE": GlueLayout("sentence1", "sentence2", "label", _ENTAIL, hub_name="rte",
                      hub_text=("sentence1", "sentence2")),
    "CoLA": GlueLayout(3, None, 1, _int_label, header=False, num_columns=4, hub_name="cola"),
    "QNLI": GlueLayout("question", "sentence", "label", _ENTAIL, hub_name="qnli",
                       hub_text=("question", "sentence")),
    "QQP": GlueLayout("question1", "question2", "is_duplicate", _int_label, hub_name="qqp",
                      hub_text=("question1", "question2")),
    "MNLI": GlueLayout("sentence1", "sentence2", "gold_label", _mnli_label,
                       dev_file="dev_matched.tsv", hub_name="mnli",
                       hub_text=("premise", "hypothesis"), hub_validation="validation_matched"),
    "STS-B": GlueLayout("sentence1", "sentence2", "score", _stsb_label, hub_name="stsb",
                        hub_text=("sentence1", "sentence2")),
}


def glue_files(glue_dir: str | Path, task: str) -> dict[str, Path]:
    """The train and dev TSV paths of ``task`` under ``glue_dir`` (official layout: ``<dir>/<task>/*.tsv``)."""
    layout = GLUE_TASKS[task]
    root = Path(glue_dir) / task
    return {"train": root / "train.tsv", "dev": root / layout.dev_file}


def read_glue_tsv(path: str | Path, task: str) -> list[dict]:
    """Parse one GLUE TSV file; a malformed row raises DataError naming the file and line."""
    layout = GLUE_TASKS[task]
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected the official GLUE layout <glue_dir>/{task}/)")
    try:
        return _read_glue_rows(path, task, layout)
    except UnicodeDecodeError:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise DataError(f"{path}:{line}: not UTF-8 text (byte {raw[exc.start:exc.end]!r}); "
                            "save the file as UTF-8") from None
        raise


def _read_glue_rows(path: Path, task: str, layout: GlueLayout) -> list[dict]:
    records = []
    with path.open(encoding="utf-8-sig", newline="") as handle:  # -sig: a byte-order mark is not a header character
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if layout.header:
            header = next(rows, None)
            if header is None:
                raise DataError(f"{path}: empty file")
            missing = [c for c in (layout.text_a, layout.text_b, layout.label) if c is not None and c not in header]
            if missing:
                raise DataError(f"{path}:1: header lacks column(s) {missing} of the GLUE {task} layout")
            width = len(header)
            cols = {k: header.index(c) for k, c in
                    (("a", layout.text_a), ("b", layout.text_b), ("y", layout.label)) if c is not None}
        else:
            width = layout.num_columns
            cols = {k: c for k, c in (("a", layout.text_a), ("b", layout.text_b), ("y", layout.label)) if c is not None}
        start = 2 if layout.header else 1
        for line_no, row in enumerate(rows, start=start):
            if not row:
                continue
            if len(row) != width:
                raise DataError(f"{path}:{line_no}: expected {width} tab-separated columns, found {len(row)}")
            try:
                label = layout.convert(row[cols["y"]].strip())
            except ValueError as exc:
                raise DataError(f"{path}:{line_no}: {exc}") from None
            if label is None:
                continue
            records.append({
                "text_a": row[cols["a"]],
                "text_b": row[cols["b"]] if "b" in cols else None,
                "label": label,
            })
    if not records:
        raise DataError(f"{path}: no labelled rows")
    return records


def load_glue_dir(glue_dir: str | Path, task: str) -> dict[str, list[dict]]:
    """Train and dev records of one task from a local folder in the official GLUE layout."""
    return {split: read_glue_tsv(path, task) for split, path in glue_files(glue_dir, task).items()}


def load_glue_hub(task: str, cache_dir: str | None = None) -> dict[str, list[dict]]:  # pragma: no cover - needs network
    """Train and validation records of one task via ``datasets.load_dataset("glue", ...)`` (online use)."""
    try:
        import datasets
    except ImportError as exc:
        raise DataError("data.source 'hub' needs the 'datasets' package: pip install 'inflbench[hub]'") from exc
    layout = GLUE_TASKS[task]
    ds = datasets.load_dataset("glue", layout.hub_name, cache_dir=cache_dir)
    out = {}
    for split, hub_split in (("train", "train"), ("dev", layout.hub_validation)):
        a_col, b_col = layout.hub_text
        records = []
        for row in ds[hub_split]:
            label = row["label"]
            if layout.hub_name == "mnli":
                if label == 2:  # contradiction
                    continue
            elif layout.hub_name == "stsb":
                label = int(float(label) >= 3.0)
            records.append({"text_a": row[a_col], "text_b": row[b_col] if b_col else None, "label": int(label)})
        out[split] = records
    return out


class GlueSource(DataSource):
    """GLUE tasks from a local copy in the official TSV layout (``glue_dir``) or from the hub (``hub``)."""

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
        from inflbench.data.splits import check_pool

        raw = load_glue_dir(data_cfg["glue_dir"], task) if self.local else load_glue_hub(task)
        sizes = data_cfg["sizes"]
        val_from_dev = data_cfg.get("validation_from") == "dev"
        need = {"train": sizes["train"] + (0 if val_from_dev else sizes["val"]),
                "dev": sizes["test"] + (sizes["val"] if val_from_dev else 0)}
        if data_cfg.get("cap_sizes"):  # sizes are cut to the pools later; only the classes are checked here
            need = {k: 0 for k in need}
        where = glue_files(data_cfg["glue_dir"], task) if self.local else {k: f"GLUE {task} {k} (hub)" for k in need}
        for split, records in raw.items():
            check_pool([r["label"] for r in records], need[split], str(where[split]))
        return raw["train"], raw["dev"]

    def load_pools(self, data_cfg, task, seed):
        return self._pools(data_cfg, task)


register_source("glue_dir", local=True)(GlueSource)
register_source("hub", local=False)(GlueSource)
