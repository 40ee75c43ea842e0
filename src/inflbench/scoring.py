"""Scoring that streams: gradient stores read a group of blocks at a time, score files written block by block.

A method is *block-separable* when a block's scores depend only on that block's gradients (and per-block
parameters): it can be handed any subset of the blocks, so its work is split into bounded groups (peak memory:
one group plus the score matrices being written) and, with ``scores.shards: K``, into K jobs over block ranges
whose files a merge job joins. Cosine (normalised by whole-model norms) is TracIn per group rescaled by norms
streamed over all blocks. Methods that couple blocks (``couples_blocks``: exact_joint, rrinf) run as one job
and read the stores block by block (read-on-access mappings), never holding the whole store.

Score file: a safetensors file with one ``(n_train, n_target)`` tensor per block (float32 or float64,
``scores.block_dtype``) and ``total`` in float64, accumulated block by block; metadata ``inflbench`` (run
facts) and ``inflbench_ids`` (train and target sample ids).
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Iterable, Iterator, Mapping

import torch

from inflbench.artifacts import ScoreWriter, read_gradient_index, read_score_ids
from inflbench.resources import peak_rss_mb
from inflbench.store import TensorStore, block_groups, shard_blocks

log = logging.getLogger("inflbench")

#: Methods normalised by whole-model quantities, scored group by group as another method times a rescaling
#: computed from all blocks: cosine = TracIn / (||g_train|| ||g_test||) with whole-model norms.
RESCALED = {"cosine": "tracin"}


def separable(method: str) -> bool:
    from inflbench.methods import get

    spec = get(method)
    return method in RESCALED or not (spec.couples_blocks or spec.needs_model)


def _read(store: TensorStore, name: str) -> torch.Tensor:
    t = store.read(name)
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _sq_norms(store: TensorStore, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """The store's per-sample squared norms of ``names`` (none for a store written without them)."""
    out = {k: store.sq_norms(k) for k in names}
    return {k: v for k, v in out.items() if v is not None}


def _inverse_norms(store: TensorStore) -> torch.Tensor:
    """1 / whole-model gradient norm per sample (0 for a zero gradient): the stored norms, else read block by
    block."""
    from inflbench.methods._common import sq_norms

    total = None
    for name in store.names:
        sq = store.sq_norms(name)
        sq = sq_norms(_read(store, name)) if sq is None else sq
        total = sq if total is None else total + sq
    norm = total.sqrt()
    return torch.where(norm > 0, 1.0 / norm, torch.zeros_like(norm))


def store_sizes(store: TensorStore, dtype_bytes: int = 4) -> dict[str, int]:
    """Block -> bytes of the whole block at ``dtype_bytes`` per value, in file order."""
    return {k: math.prod(store.shape(k)) * dtype_bytes for k in store.names}


def _subset_params(params: dict, names: list[str]) -> dict:
    damping = params.get("damping")
    if isinstance(damping, Mapping):
        return {**params, "damping": {k: damping[k] for k in names if k in damping}}
    return params


def _merge_meta(metas: list[dict]) -> dict:
    """One meta from the per-group metas: min of *_min, max of *_max, any of booleans, joined block lists."""
    out: dict = {}
    for meta in metas:
        for k, v in meta.items():
            if k not in out:
                out[k] = v
            elif isinstance(v, bool):
                out[k] = out[k] or v
            elif k.endswith("_min") and isinstance(v, (int, float)):
                out[k] = min(out[k], v)
            elif k.endswith("_max") and isinstance(v, (int, float)):
                out[k] = max(out[k], v)
            elif k.endswith("_blocks") and v:
                out[k] = ",".join(x for x in (out[k], v) if x)
    return out


def pick_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def stats_on(stats, dev: torch.device):
    """Block statistics whose norms and Grams (each moved when asked for) live on ``dev``."""
    from inflbench.methods._stats import BlockStats

    if stats is None or dev.type == "cpu":
        return stats
    return BlockStats(stats.n, stats.shapes, {k: v.to(dev) for k, v in stats.train_sq.items()},
                      lambda k: stats.gram(k).to(dev))


def _compute(method: str, params: dict, train, test, dev: torch.device, stats=None, norms=({}, {})):
    from inflbench.methods import compute_influence

    if dev.type == "cpu":
        return compute_influence(method, train, test, block_stats=stats, train_sq=norms[0], test_sq=norms[1],
                                 **params)
    on = [{k: v.to(dev) for k, v in side.items()} for side in norms]
    with dev:  # tensors a method creates land on the device too
        res = compute_influence(method, {k: train[k].to(dev) for k in train}, {k: test[k].to(dev) for k in test},
                                block_stats=stats_on(stats, dev), train_sq=on[0], test_sq=on[1], **params)
    return type(res)({k: v.cpu() for k, v in res.items()}, meta=res.meta)


def iter_block_scores(method: str, params: dict, train: TensorStore, test: TensorStore, blocks: list[str],
                      group_bytes: int, device: str = "cpu", stats=None) -> Iterator[tuple[dict[str, torch.Tensor], dict]]:
    """``(block -> scores, meta)`` per group of blocks. A separable method gets groups of at most
    ``group_bytes`` read whole; a method coupling blocks gets all blocks as read-on-access mappings
    (:class:`inflbench.store.LazyTensors`), so it holds one block at a time beside its own working set.
    Half-precision stores are upcast to float32 as read; the stores' per-sample norms go with the gradients.
    ``stats``: shared block statistics of the train store (moved to the device with the gradients)."""
    dev = pick_device(device)
    sizes = {k: v for k, v in store_sizes(train).items() if k in set(blocks)}
    split = separable(method)
    grouped = block_groups(sizes, group_bytes) if split else [list(sizes)]
    scale = None
    if method in RESCALED and grouped:
        scale = _inverse_norms(train)[:, None] * _inverse_norms(test)[None, :]
    for names in grouped:
        if split:
            tr = {k: _read(train, k) for k in names}
            te = {k: _read(test, k) for k in names}
        else:
            tr, te = train.lazy(names, upcast=True), test.lazy(names, upcast=True)
        norms = (_sq_norms(train, names), _sq_norms(test, names))
        res = _compute(RESCALED.get(method, method), _subset_params(params, names), tr, te, dev, stats, norms)
        del tr, te
        scores = dict(res) if scale is None else {k: v * scale for k, v in res.items()}
        yield scores, {**res.meta, "method": method}


def _ids(path: str) -> list[int]:
    return [int(i) for i in read_gradient_index(path)["sample_ids"]]


def score_stores(method: str, params: dict, train_path: str, test_path: str, out: str, scores_cfg: dict,
                 shard: tuple[int, int] = (0, 1), base_meta: dict | None = None, stats_path: str | None = None) -> dict:
    """Scores of one method (or of shard ``(i, k)`` of its blocks) from two gradient stores, streamed into
    ``out``; ``stats_path``: the train store's block statistics file. Returns the run meta."""
    train, test = TensorStore(train_path), TensorStore(test_path)
    if train.names != test.names:
        raise ValueError(f"{train_path} and {test_path} hold different blocks")
    sizes = store_sizes(train)
    i, k = shard
    blocks = shard_blocks(sizes, k, i) if k > 1 else list(sizes)
    n, m = train.shape(train.names[0])[0], test.shape(test.names[0])[0]
    from inflbench.methods import get

    coupled = get(method).couples_blocks  # one "total" only
    dtype = getattr(torch, scores_cfg.get("block_dtype", "float64"))
    stats = None
    if stats_path:
        from inflbench.artifacts import load_block_stats

        stats = load_block_stats(stats_path)
    ids = {"train": _ids(train_path), "target": _ids(test_path)}
    writer = ScoreWriter(out, [] if coupled else blocks, n, m, ids, dtype)
    start, metas = time.perf_counter(), []
    try:
        for scores, meta in iter_block_scores(method, params, train, test, blocks,
                                              int(scores_cfg.get("group_mb", 256) * 2**20), scores_cfg.get("device") or "cpu",
                                              stats):
            for name, s in scores.items():
                writer.add(name, s)
            metas.append(meta)
        seconds = time.perf_counter() - start
        meta = {"method": method, "params": params, "seconds": seconds, "peak_rss_mb": peak_rss_mb(),
                "blocks": len(blocks), "shard": f"{i}/{k}",
                **{f"meta.{key}": v for key, v in _merge_meta(metas).items()}}
        writer.close({**(base_meta or {}), **meta})
    except BaseException:
        writer.abort()
        raise
    log.info("%s: %.3fs, %d blocks, shard %d/%d", method, seconds, len(blocks), i, k)
    return meta


def merge_score_files(parts: Iterable[str], out: str) -> dict:
    """One score file from the shard files of a method (blocks in shard order, totals summed in float64)."""
    parts = list(parts)
    stores = [TensorStore(p) for p in parts]
    metas = [json.loads(s.metadata["inflbench"]) for s in stores]
    blocks = [b for s in stores for b in s.names if b != "total"]
    n, m = stores[0].shape("total")
    dtype = stores[0].read(blocks[0], 0, 1).dtype if blocks else torch.float64
    meta = {k: v for k, v in metas[0].items() if not k.startswith("meta.")}
    meta.update(seconds=sum(x["seconds"] for x in metas), peak_rss_mb=max(x["peak_rss_mb"] for x in metas),
                blocks=len(blocks), shard=f"merged {len(parts)}")
    meta.update({f"meta.{k}": v for k, v in _merge_meta(
        [{k[5:]: v for k, v in x.items() if k.startswith("meta.")} for x in metas]).items()})
    writer = ScoreWriter(out, blocks, n, m, read_score_ids(parts[0]), dtype)
    try:
        for s in stores:  # the total is the float64 sum of the shard totals, not of rounded blocks
            writer.add("total", s.read("total"))
            for b in s.names:
                if b != "total":
                    writer.add(b, s.read(b), count=False)
        writer.close(meta)
    except BaseException:
        writer.abort()
        raise
    return meta
