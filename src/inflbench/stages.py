"""Stages of the core DAG shared by every model-based study: data splits, LoRA fine-tuning, per-sample
gradients, influence scores. Each is ``stage(inputs, outputs, params)`` over plain mappings (see
:mod:`inflbench.jobs`); the ``scripts/`` adapters and the tests call them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import torch

from inflbench import data as data_mod
from inflbench.artifacts import (checkpoint_choice, gradient_index_path, load_adapter, merge_gradient_stores,
                                 read_gradient_index, read_split, save_adapter, save_peft_adapter, save_scores,
                                 split_paths, write_json, write_table)
from inflbench.gradients import fingerprint, input_embedding, present_tokens
from inflbench.resources import activation_budget, peak_rss_mb
from inflbench.models import get_family, iterate_batches, load_trainable, pick_device
from inflbench.progress import track
from inflbench.training import TrainArgs, finetune, predictions

log = logging.getLogger("inflbench")


def _num_labels(frames: list[pd.DataFrame]) -> int:
    return int(max(max(f["label"].max(), f["clean_label"].max()) for f in frames) + 1)


def stage_prepare_data(inputs: dict, outputs: dict, params: dict) -> None:
    """params: data (section), task, seed -> outputs train/val/test split tables (+ sizes: the sizes used)."""
    data_cfg, task, seed = params["data"], params["task"], params["seed"]
    plan: list = []
    tables = data_mod.prepare_splits(data_cfg, task, seed, plan)
    for split, frame in tables.items():
        write_table(frame, outputs[split], {"data": data_cfg, "task": task, "seed": seed})
    if "sizes" in outputs:  # the sizes actually drawn (capped to the pools with data.cap_sizes)
        write_table(plan[0], outputs["sizes"], {"data": data_cfg, "task": task, "seed": seed})
        log.info("%s: %d rows, %d flipped", split, len(frame), int(frame["flipped"].sum()))


def family_and_splits(model_cfg: dict, paths: dict[str, str]):
    """The model family (sized to the task's classes) and the train/val/test tables."""
    frames = {k: read_split(p) for k, p in split_paths(paths).items()}
    family = get_family(model_cfg, num_labels=_num_labels(list(frames.values())))
    return family, frames


def stage_finetune(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs train/val/test; params model, train, seed, device -> outputs adapter, curve, predictions
    (+ peft: the adapter in PEFT's format)."""
    model_cfg, train_cfg, seed = params["model"], params["train"], params["seed"]
    family, frames = family_and_splits(model_cfg, inputs)
    encoded = {k: family.encode(f) for k, f in frames.items()}
    model = family.build(seed)
    dev = pick_device(params["device"])
    args = TrainArgs(seed=seed, **train_cfg)
    state, curve = finetune(family, model, encoded["train"], encoded["val"], args, dev,
                            test=encoded.get("test"), log=log.info)
    provenance = {"model": model_cfg, "train": train_cfg, "seed": seed}
    save_adapter(outputs["adapter"], state, provenance, curve.loc[curve["best"], "epoch"].iloc[0],
                 curve.loc[curve["best"], "selection"].iloc[0])
    write_table(curve, outputs["curve"], provenance)
    load_trainable(model, state)
    if "peft" in outputs:
        save_peft_adapter(outputs["peft"], model, provenance)
    model.to(dev)
    preds = predictions(family, model, {k: v.to(dev) for k, v in encoded["val"].items()}, args.eval_batch_size)
    preds.insert(0, "id", frames["val"]["id"].to_numpy())
    write_table(preds, outputs["predictions"], provenance)


def stage_pretrain(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs splits (the run's benchmark samples, left out of the corpus); params model (model.options.pretrain
    enabled) -> outputs weights (full state of the tiny Llama), curve."""
    from inflbench.models.pretrain import pretrain_tiny

    exclude = frozenset(p for path in inputs.get("splits", []) for p in read_split(path)["prompt"])
    log.info("corpus leaves out the %d prompts of %d benchmark splits", len(exclude), len(inputs.get("splits", [])))
    state, curve = pretrain_tiny(params["model"], exclude=exclude, log=log.info)
    options = get_family(params["model"]).options
    provenance = {"pretrain": options["pretrain"], "tiny": options["tiny"], "tokenizer": options["tokenizer"]}
    save_adapter(outputs["weights"], state, provenance, int(curve["step"].max()), "end of pretraining")
    write_table(curve, outputs["curve"], provenance)


def load_finetuned(model_cfg: dict, seed: int, adapter: str, paths: dict[str, str], device: str):
    """(family, fine-tuned model in eval mode, split tables)."""
    family, frames = family_and_splits(model_cfg, paths)
    model = family.build(seed)
    load_trainable(model, load_adapter(adapter))
    model.to(pick_device(device)).eval()
    return family, model, frames


def stage_gradients(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs train/val/test, adapter; params model, gradients, seed, device, split [, chunk, chunks] -> outputs
    grads (+ index). Per-sample gradients of the selected blocks (``gradients.blocks``), streamed batch by batch
    into the store; with ``chunks`` = k only the ``chunk``-th of k contiguous sample ranges (merged by
    :func:`stage_merge_gradients`)."""
    import numpy as np

    from inflbench.gradients import stream_gradients, trainable_blocks
    from inflbench.store import select_blocks

    model_cfg, grad_cfg, seed, split = params["model"], params["gradients"], params["seed"], params["split"]
    adapter = inputs["adapter"]
    family, model, frames = load_finetuned(model_cfg, seed, adapter, inputs, params["device"])
    trainable = list(trainable_blocks(model))
    blocks = select_blocks(trainable, grad_cfg.get("blocks"))
    log.info("storing %d of %d trainable blocks (gradients.blocks); left out: %s", len(blocks), len(trainable),
             sorted(set(trainable) - set(blocks))[:5])
    dev = next(model.parameters()).device
    rows = np.array_split(np.arange(len(frames[split])), int(params.get("chunks", 1)))[int(params.get("chunk", 0))]
    frame = frames[split].iloc[rows[0]:rows[-1] + 1] if len(rows) else frames[split].iloc[:0]
    encoded = family.encode(frame)
    batches = ({k: v.to(dev) for k, v in b.items()} for b in iterate_batches(encoded, grad_cfg["batch_size"]))
    tokens, extra = None, {}
    if grad_cfg.get("word_embeddings"):  # WE block over the tokens of all task splits (layer-choice paper)
        tokens = present_tokens(family.encode(f) for f in frames.values())
        extra = {"word_embeddings": {"block": input_embedding(model)[0], "token_ids": tokens.tolist()}}
    n_batches = -(-len(frame) // grad_cfg["batch_size"])
    batches = track(batches, f"gradients {split}", n_batches, "batches")
    meta = {"split": split, "model": model_cfg, "seed": seed, **extra, **checkpoint_choice(adapter),
            "fingerprint": fingerprint({"model": model_cfg, "seed": seed, "adapter": Path(adapter).stat().st_size})}
    start = time.perf_counter()
    n_blocks = stream_gradients(outputs["grads"], model, batches, family.per_sample_loss, frame["id"].tolist(), meta,
                                family.rows_per_sample, dtype=getattr(torch, grad_cfg["dtype"]),
                                word_embeddings=tokens, blocks=blocks,
                                activation_bytes=activation_budget(grad_cfg, dev))
    seconds = time.perf_counter() - start
    index = read_gradient_index(outputs["grads"])
    index.update(seconds=seconds, peak_rss_mb=peak_rss_mb())
    write_json(index, gradient_index_path(outputs["grads"]))
    log.info("%d blocks, %d samples, %.2fs", n_blocks, len(frame), seconds)


def stage_merge_gradients(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs chunks (the sample-chunk stores of ``gradients.chunks`` jobs) -> outputs grads (+ index)."""
    seconds = sum(read_gradient_index(p).get("seconds", 0.0) for p in inputs["chunks"])
    merge_gradient_stores(inputs["chunks"], outputs["grads"], {"seconds": seconds, "chunks": len(inputs["chunks"])})


def stage_block_stats(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs train (gradient file) [, params device: where the products run, as ``scores.device``] ->
    outputs stats: Grams and per-sample norms of every block, once per store (shared by the curvature
    methods)."""
    from inflbench.artifacts import save_block_stats
    from inflbench.methods._stats import iter_store_stats
    from inflbench.scoring import pick_device
    from inflbench.store import TensorStore

    start = time.perf_counter()
    device = pick_device(params.get("device") or "cpu")
    store = TensorStore(inputs["train"])
    shapes = {k: store.shape(k)[1:] for k in store.names}

    def meta() -> dict:
        return {"source": str(inputs["train"]), "device": str(device), "seconds": time.perf_counter() - start,
                "peak_rss_mb": peak_rss_mb()}

    # Gram by Gram, each from row chunks of the store: peak one Gram + one row chunk
    items = iter_store_stats(store, device=device)
    save_block_stats(outputs["stats"], (store.shape(store.names[0])[0], shapes, items), meta)
    log.info("block statistics on %s: %d blocks, %.3fs", device, len(shapes), time.perf_counter() - start)


def stage_scores(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs train, target (gradient files), optional stats (block statistics of train); params method (entry
    name), method_params (its entry), scores, seed (optional: the replicate's, for methods with a seed)
    [, shard, shards] -> outputs scores. Streamed block group by block group (:mod:`inflbench.scoring`); with
    ``shards`` = k only the ``shard``-th of k block ranges (joined by :func:`stage_merge_scores`)."""
    from inflbench.methods import method_entry
    from inflbench.scoring import score_stores

    entry = params["method"]
    method, method_params = method_entry(entry, params["method_params"], params.get("seed"))
    shard = (int(params.get("shard", 0)), int(params.get("shards", 1)))
    score_stores(method, method_params, inputs["train"], inputs["target"], outputs["scores"],
                 dict(params.get("scores") or {}), shard, base_meta={"entry": entry, **checkpoint_choice(inputs["train"])},
                 stats_path=inputs.get("stats") or None)


def stage_merge_scores(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs shards (score files of one method's block ranges) -> outputs scores."""
    from inflbench.scoring import merge_score_files

    merge_score_files(inputs["shards"], outputs["scores"])


def stage_model_scores(inputs: dict, outputs: dict, params: dict) -> None:
    """Scores of a method that needs the model (``needs_model``, e.g. EK-FAC), same contract as
    :func:`stage_scores`: one ``(n_train, n_target)`` entry per trainable block plus ``total``.

    inputs train/val/test, adapter; params method, method_params, model, seed, device, target_split, batch_size.
    """
    from inflbench.gradients import trainable_blocks
    from inflbench.methods import get, make_params, method_entry

    entry = params["method"]
    method, method_params = method_entry(entry, params["method_params"], params.get("seed"))
    target_split, batch_size = params["target_split"], params["batch_size"]
    spec = get(method)
    if not spec.needs_model:
        raise ValueError(f"method {method!r} works on stored gradients; use stage_scores")
    p = make_params(method, **method_params)
    family, model, frames = load_finetuned(params["model"], params["seed"], inputs["adapter"], inputs,
                                           params["device"])
    if family.rows_per_sample != 1:
        raise ValueError(f"method {method!r} needs one model row per sample; family {family.name!r} uses "
                         f"{family.rows_per_sample}")
    blocks = {id(m): k for k, m in trainable_blocks(model).items()}
    names = {name: blocks[id(m)] for name, m in model.named_modules() if id(m) in blocks}  # module -> block
    wanted = getattr(p, "module_names", None)
    if wanted:
        unknown = sorted(set(wanted) - set(names.values()))
        if unknown:
            raise ValueError(f"methods.{entry}.module_names: unknown blocks {unknown[:3]}; blocks are {sorted(names.values())[:4]} ...")
        names = {k: v for k, v in names.items() if v in set(wanted)}
    batches = {split: list(iterate_batches(family.encode(frames[split]), batch_size))
               for split in ("train", target_split)}
    start = time.perf_counter()
    result = spec.fn(model, batches["train"], batches[target_split], family.per_sample_loss, list(names), p)
    seconds = time.perf_counter() - start
    scores = {names[k]: v for k, v in result.items()}
    meta = {"method": method, "entry": entry, "params": method_params, "seconds": seconds,
            "peak_rss_mb": peak_rss_mb(), **checkpoint_choice(inputs["adapter"])}
    log.info("%s: %.3fs, blocks=%d", method, seconds, len(scores))
    save_scores(outputs["scores"], scores, meta,
                {"train": frames["train"]["id"].tolist(), "target": frames[target_split]["id"].tolist()},
                (params.get("scores") or {}).get("block_dtype", "float64"))
