"""Reading and writing every artifact kind of the workflow, with its provenance: one reader and one writer each.

Kinds: split tables (CSV), result tables (CSV + ``.config.json`` sidecar), adapters, per-sample gradients
(safetensors + JSON index) and influence scores (safetensors, one ``(n_train, n_target)`` entry per block
plus ``total``; the metadata travels inside the file).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from inflbench.paths import sidecar

SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------- provenance and tables


def write_provenance(path: str | Path, provenance: dict) -> None:
    sidecar(path).write_text(json.dumps(provenance, indent=1, sort_keys=True, default=str))


def write_table(frame: pd.DataFrame, path: str | Path, provenance: dict) -> None:
    """CSV table plus its config sidecar."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    write_provenance(path, provenance)


def write_json(data: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1))


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def as_plain(obj) -> dict:
    """Snakemake's Namedlist / params -> plain dict (recursively JSON-able)."""
    return json.loads(json.dumps(dict(obj), default=str))


# ---------------------------------------------------------------- data splits


def read_split(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(path, keep_default_na=False, na_values={"text_b": [""]})
    if "text_b" in frame:
        frame["text_b"] = frame["text_b"].astype(object).where(frame["text_b"].notna(), None)
    return frame


def read_splits(paths: dict[str, str]) -> dict[str, pd.DataFrame]:
    """The train/val/test tables of a task from a mapping that holds (at least) their paths."""
    return {s: read_split(paths[s]) for s in SPLITS if s in paths}


def split_paths(paths: dict) -> dict[str, str]:
    """The train/val/test entries of a rule's inputs."""
    return {s: paths[s] for s in SPLITS}


# ---------------------------------------------------------------- adapters


def save_adapter(path: str | Path, state: dict, provenance: dict, best_epoch: int, selection: str = "") -> None:
    """Trainable parameters of the kept checkpoint; metadata: provenance, the kept epoch and why."""
    from safetensors.torch import save_file

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path),
              metadata={"inflbench": json.dumps(provenance), "best_epoch": str(int(best_epoch)),
                        "selection": selection})


#: metadata keys that travel adapter -> gradient index -> scores -> tables (which checkpoint, and why)
CHECKPOINT_KEYS = ("best_epoch", "selection")


def checkpoint_choice(path: str | Path) -> dict[str, str]:
    """The kept epoch and its reason, from an adapter or a gradient file (via its index)."""
    from safetensors import safe_open

    index = gradient_index_path(path)
    if index.is_file():
        meta = json.loads(index.read_text())
    else:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    return {k: meta[k] for k in CHECKPOINT_KEYS if k in meta}


def save_peft_adapter(folder: str | Path, model, provenance: dict) -> None:
    """The fine-tuned adapter in PEFT's own format (``PeftModel.from_pretrained(base, folder)`` loads it; the
    task head travels as a saved module) plus ``inflbench.json`` with our provenance. Models that are not
    PEFT models get the provenance only."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(str(folder))
    write_json({"provenance": provenance, "peft": hasattr(model, "peft_config"),
                "load": "PeftModel.from_pretrained(<base model with the same head size>, this folder)"},
               folder / "inflbench.json")


def load_adapter(path: str | Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


# ---------------------------------------------------------------- per-sample gradients


def gradient_index_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def _gradient_file_metadata(meta: dict) -> dict[str, str]:
    return {"inflbench": json.dumps({"fingerprint": meta.get("fingerprint", "")})}


def write_gradient_index(path: str | Path, blocks: dict[str, tuple], sample_ids: list[int], meta: dict) -> None:
    """The JSON index beside a gradient store: blocks (per-sample shape, dtype), n, sample ids, provenance."""
    index = {
        "blocks": {name: {"shape": list(shape), "dtype": str(dtype).replace("torch.", "")}
                   for name, (shape, dtype) in blocks.items()},
        "n": len(sample_ids),
        "sample_ids": [int(i) for i in sample_ids],
        **meta,
    }
    gradient_index_path(path).write_text(json.dumps(index, indent=1))


def read_gradient_index(path: str | Path) -> dict:
    return json.loads(gradient_index_path(path).read_text())


def gradient_writer(path: str | Path, specs: dict, meta: dict):
    """The writer of a gradient store (:class:`inflbench.store.GradientStoreWriter`, which writes each block's
    per-sample squared norms with its rows): ``specs`` block -> ((n, *shape), dtype), provenance ``meta`` in
    the file header; :func:`write_gradient_index` completes the store."""
    from inflbench.store import GradientStoreWriter

    return GradientStoreWriter(path, specs, _gradient_file_metadata(meta))


def save_gradients(path: str | Path, grads: dict, sample_ids: list[int], meta: dict) -> None:
    """Safetensors file (one ``(n, ...)`` tensor per block, samples first, blocks in the given order) + JSON
    index beside it (blocks, shapes, ids, provenance); the layout ``gradients.stream_gradients`` writes batch
    by batch."""
    with gradient_writer(path, {k: (g.shape, g.dtype) for k, g in grads.items()}, meta) as writer:
        for name, g in grads.items():
            writer.write(name, 0, g)
    write_gradient_index(path, {k: (g.shape[1:], g.dtype) for k, g in grads.items()}, sample_ids, meta)


def load_gradients(path: str | Path, blocks: Iterable[str] | None = None) -> dict:
    """Block name -> per-sample gradients (torch), in file order; ``blocks`` loads only those.
    :class:`inflbench.store.TensorStore` reads one block or one row range at a time."""
    from inflbench.store import TensorStore

    store = TensorStore(path)
    return {name: store.read(name) for name in (store.names if blocks is None else list(blocks))}


def merge_gradient_stores(parts: list, out: str | Path, meta_update: dict | None = None,
                          max_bytes: int = 64 << 20) -> None:
    """One gradient store from sample-chunk stores (rows concatenated in ``parts`` order), copied row chunk by
    row chunk."""
    import torch

    from inflbench.store import TensorStore

    indexes = [read_gradient_index(p) for p in parts]
    readers = [TensorStore(p) for p in parts]
    ids = [i for ix in indexes for i in ix["sample_ids"]]
    specs = {k: ((len(ids), *b["shape"]), getattr(torch, b["dtype"])) for k, b in indexes[0]["blocks"].items()}
    meta = {k: v for k, v in indexes[0].items() if k not in ("blocks", "n", "sample_ids")}
    meta.update(meta_update or {})
    with gradient_writer(out, specs, meta) as writer:
        for name in specs:
            start = 0
            for reader in readers:
                for offset, rows in reader.row_chunks(name, max_bytes):
                    writer.write(name, start + offset, rows)
                start += reader.shape(name)[0]
    write_gradient_index(out, {k: (s[1:], d) for k, (s, d) in specs.items()}, ids, meta)


# ---------------------------------------------------------------- block statistics (shared Grams)


def save_block_stats(path: str | Path, stats, meta=None) -> None:
    """Block statistics as one safetensors file: ``gram.<block>`` (float64) and ``sq.<block>`` tensors, n and
    shapes in the metadata, written block by block. ``stats``: a
    :class:`inflbench.methods._stats.BlockStats`, or ``(n, shapes, items)`` with ``items`` yielding
    ``(block, Gram, norms)`` in ``shapes`` order (e.g. :func:`inflbench.methods._stats.iter_store_stats`);
    ``meta``: dict, or a callable returning it once every block is written."""
    import torch

    from inflbench.store import StoreWriter

    if isinstance(stats, tuple):
        n, shapes, items = stats
    else:
        n, shapes = stats.n, stats.shapes
        items = ((k, stats.gram(k), stats.train_sq[k]) for k in shapes)
    side = lambda s: min(n, math.prod(s))  # noqa: E731 - the Gram's side (n x n or d_b x d_b)
    specs = {}
    for k, s in shapes.items():
        specs[f"gram.{k}"] = ((side(s), side(s)), torch.float64)
        specs[f"sq.{k}"] = ((n,), torch.float64)
    info = {"n": int(n), "shapes": {k: list(s) for k, s in shapes.items()}}
    writer = StoreWriter(path, specs, {"inflbench_block_stats": json.dumps(info)}, reserve=1 << 14)
    try:
        for k, gram, sq in items:
            writer.write(f"gram.{k}", 0, gram.to("cpu", torch.float64))
            writer.write(f"sq.{k}", 0, sq.to("cpu", torch.float64))
        meta = meta() if callable(meta) else meta
        writer.set_metadata({"inflbench_block_stats": json.dumps({**info, **dict(meta or {})}, default=str)})
    except BaseException:
        writer.abort()
        raise
    writer.close()


def load_block_stats(path: str | Path):
    """Read the metadata and norms now; each Gram is read from the file when a method asks for it."""
    from safetensors import safe_open

    from inflbench.methods._stats import BlockStats

    path = str(path)
    with safe_open(path, framework="pt") as h:
        raw = (h.metadata() or {}).get("inflbench_block_stats")
        if raw is None:
            raise ValueError(f"{path}: not a block statistics file (no 'inflbench_block_stats' metadata)")
        info = json.loads(raw)
        sq = {k: h.get_tensor(f"sq.{k}") for k in info["shapes"]}

    def get(k: str):
        with safe_open(path, framework="pt") as h:
            return h.get_tensor(f"gram.{k}")

    return BlockStats(int(info["n"]), {k: tuple(s) for k, s in info["shapes"].items()}, sq, get)


# ---------------------------------------------------------------- influence scores


#: Header bytes reserved in a score file for the run facts written when scoring ends.
SCORE_META_BYTES = 1 << 16


class ScoreWriter:
    """Score file written block by block: per-block ``(n_train, n_target)`` scores in ``block_dtype`` and a
    running float64 ``total``; metadata ``inflbench`` (run facts) and ``inflbench_ids`` (train / target ids)."""

    def __init__(self, path: str | Path, blocks: list[str], n: int, m: int, ids: dict | None = None,
                 block_dtype=None):
        import torch

        from inflbench.store import StoreWriter

        specs = {k: ((n, m), block_dtype or torch.float64) for k in blocks if k != "total"}
        specs["total"] = ((n, m), torch.float64)
        self.path, self.ids = str(path), dict(ids or {})
        self.writer = StoreWriter(path, specs, {"inflbench_ids": json.dumps(self.ids)}, reserve=SCORE_META_BYTES)
        self.total = torch.zeros(n, m, dtype=torch.float64)
        self.pending = set(specs)

    def add(self, name: str, scores, count: bool = True) -> None:
        """Write a block's scores (``count``: also add them to the total); ``total`` adds to the total only."""
        import torch

        if name == "total" or count:
            self.total += scores.to(torch.float64)
        if name != "total":
            self.writer.write(name, 0, scores)
        self.pending.discard(name)

    def close(self, meta: dict) -> None:
        self.pending.discard("total")
        if self.pending:
            self.writer.abort()
            raise RuntimeError(f"{self.path}: no scores for blocks {sorted(self.pending)[:3]}")
        self.writer.write("total", 0, self.total)
        self.writer.set_metadata({"inflbench": json.dumps(meta, default=str), "inflbench_ids": json.dumps(self.ids)})
        self.writer.close()
        write_provenance(self.path, meta)

    def abort(self) -> None:
        self.writer.abort()


def save_scores(path: str | Path, scores: dict, meta: dict, ids: dict | None = None,
                block_dtype: str = "float64") -> None:
    """Per-block (n_train, n_target) scores in ``block_dtype`` plus the float64 ``total`` (the sum of the blocks
    unless given), written block by block; the metadata travels inside the file."""
    import torch

    blocks = [k for k in scores if k != "total"]
    n, m = next(iter(scores.values())).shape
    writer = ScoreWriter(path, blocks, n, m, ids, getattr(torch, block_dtype))
    for k, v in scores.items():
        writer.add(k, v.detach(), count="total" not in scores)
    writer.close(meta)


def read_score_ids(path: str | Path) -> dict:
    """``{"train": [...], "target": [...]}`` sample ids of a score file ({} for files without them)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        return json.loads((handle.metadata() or {}).get("inflbench_ids", "{}"))


def read_scores(path: str | Path, blocks: Iterable[str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """(block -> (n_train, n_target) float64 array, metadata) of a score file; ``blocks`` reads only those
    (e.g. ``["total"]``). The only reader of score files; needs no torch."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        names = list(handle.keys()) if blocks is None else list(blocks)
        arrays = {name: handle.get_tensor(name).astype(np.float64, copy=False) for name in names}
        meta = json.loads((handle.metadata() or {}).get("inflbench", "{}"))
    return arrays, meta


def LazyScores(path: str | Path):
    """Block -> float64 ``(n_train, n_target)`` array of a score file (blocks sorted by name), each read from
    disk when accessed (consumers going block by block never hold the whole file): the store's
    read-on-access view (:class:`inflbench.store.LazyTensors`) with numpy float64 values."""
    from inflbench.store import LazyTensors, TensorStore

    class _Scores(LazyTensors):
        def __getitem__(self, name: str) -> np.ndarray:
            return super().__getitem__(name).numpy().astype(np.float64)  # a fresh array per access

    store = TensorStore(path)
    return _Scores(store, sorted(store.names))


def read_scores_meta(path: str | Path) -> dict:
    return read_scores(path, blocks=())[1]


def train_sample_scores(path: str | Path) -> np.ndarray:
    """Score per training sample: mean over target samples of the total (n_train, n_target) influence."""
    import torch

    total = read_scores(path, blocks=["total"])[0]["total"]
    return torch.from_numpy(total).mean(1).numpy()  # torch's reduction, as the scores were always averaged
