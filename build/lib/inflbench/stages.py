"""Stages of the core DAG shared by every model-based study: data splits, LoRA fine-tuning, per-sample
gradients, influence scores. Each is ``stage(inputs, outputs, params)`` over plain mappings (see
:mod:`inflbench.jobs`); the ``scripts/`` adapters and the tests call them.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from inflbench import data as data_mod
from inflbench.artifacts import (load_adapter, load_gradients, read_split, save_adapter, save_gradients,
                                 save_peft_adapter, save_scores, split_paths, write_table)
from inflbench.gradients import fingerprint, input_embedding, per_sample_gradients, present_tokens
from inflbench.models import get_family, iterate_batches, load_trainable, pick_device
from inflbench.progress import track
from inflbench.training import TrainArgs, finetune, predictions

log = logging.getLogger("inflbench")


def _num_labels(frames: list[pd.DataFrame]) -> int:
    return int(max(max(f["label"].max(), f["clean_label"].max()) for f in frames) + 1)


def stage_prepare_data(inputs: dict, outputs: dict, params: dict) -> None:
    """params: data (section), task, seed -> outputs train/val/test split tables."""
    data_cfg, task, seed = params["data"], params["task"], params["seed"]
    tables = data_mod.prepare_splits(data_cfg, task, seed)
    for split, frame in tables.items():
        write_table(frame, outputs[split], {"data": data_cfg, "task": task, "seed": seed})
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
    save_adapter(outputs["adapter"], state, provenance, curve.loc[curve["best"], "epoch"].iloc[0])
    write_table(curve, outputs["curve"], provenance)
    load_trainable(model, state)
    if "peft" in outputs:
        save_peft_adapter(outputs["peft"], model, provenance)
    model.to(dev)
    preds = predictions(family, model, {k: v.to(dev) for k, v in encoded["val"].items()}, args.eval_batch_size)
    preds.insert(0, "id", frames["val"]["id"].to_numpy())
    write_table(preds, outputs["predictions"], provenance)


def load_finetuned(model_cfg: dict, seed: int, adapter: str, paths: dict[str, str], device: str):
    """(family, fine-tuned model in eval mode, split tables)."""
    family, frames = family_and_splits(model_cfg, paths)
    model = family.build(seed)
    load_trainable(model, load_adapter(adapter))
    model.to(pick_device(device)).eval()
    return family, model, frames


def stage_gradients(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs train/val/test, adapter; params model, gradients, seed, device, split -> outputs grads (+ index)."""
    model_cfg, grad_cfg, seed, split = params["model"], params["gradients"], params["seed"], params["split"]
    adapter = inputs["adapter"]
    family, model, frames = load_finetuned(model_cfg, seed, adapter, inputs, params["device"])
    dev = next(model.parameters()).device
    encoded = family.encode(frames[split])
    batches = ({k: v.to(dev) for k, v in b.items()} for b in iterate_batches(encoded, grad_cfg["batch_size"]))
    tokens, extra = None, {}
    if grad_cfg.get("word_embeddings"):  # WE block over the tokens of all task splits (layer-choice paper)
        tokens = present_tokens(family.encode(f) for f in frames.values())
        extra = {"word_embeddings": {"block": input_embedding(model)[0], "token_ids": tokens.tolist()}}
    start = time.perf_counter()
    n_batches = -(-len(frames[split]) // grad_cfg["batch_size"])
    batches = track(batches, f"gradients {split}", n_batches, "batches")
    grads = per_sample_gradients(model, batches, family.per_sample_loss, family.rows_per_sample,
                                 dtype=getattr(torch, grad_cfg["dtype"]), word_embeddings=tokens)
    seconds = time.perf_counter() - start
    log.info("%d blocks, %d samples, %.2fs", len(grads), len(frames[split]), seconds)
    meta = {"split": split, "seconds": seconds, "model": model_cfg, "seed": seed, **extra,
            "fingerprint": fingerprint({"model": model_cfg, "seed": seed, "adapter": Path(adapter).stat().st_size})}
    save_gradients(outputs["grads"], grads, frames[split]["id"].tolist(), meta)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def stage_scores(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs train, target (gradient files); params method, method_params -> outputs scores."""
    from inflbench.methods import compute_influence

    method, method_params = params["method"], dict(params["method_params"])
    train, test = load_gradients(inputs["train"]), load_gradients(inputs["target"])
    start = time.perf_counter()
    result = compute_influence(method, train, test, **method_params)
    seconds = time.perf_counter() - start
    meta = {"method": method, "params": method_params, "seconds": seconds, "peak_rss_mb": _peak_rss_mb(),
            **{f"meta.{k}": v for k, v in getattr(result, "meta", {}).items()}}
    log.info("%s: %.3fs, blocks=%d", method, seconds, len(result))
    save_scores(outputs["scores"], dict(result), meta)


def stage_model_scores(inputs: dict, outputs: dict, params: dict) -> None:
    """Scores of a method that needs the model (``needs_model``, e.g. EK-FAC), same contract as
    :func:`stage_scores`: one ``(n_train, n_target)`` entry per trainable block plus ``total``.

    inputs train/val/test, adapter; params method, method_params, model, seed, device, target_split, batch_size.
    """
    from inflbench.gradients import trainable_blocks
    from inflbench.methods import get, make_params

    method, method_params = params["method"], dict(params["method_params"])
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
            raise ValueError(f"methods.{method}.module_names: unknown blocks {unknown[:3]}; blocks are {sorted(names.values())[:4]} ...")
        names = {k: v for k, v in names.items() if v in set(wanted)}
    batches = {split: list(iterate_batches(family.encode(frames[split]), batch_size))
               for split in ("train", target_split)}
    start = time.perf_counter()
    result = spec.fn(model, batches["train"], batches[target_split], family.per_sample_loss, list(names), p)
    seconds = time.perf_counter() - start
    scores = {names[k]: v for k, v in result.items()}
    meta = {"method": method, "params": method_params, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}
    log.info("%s: %.3fs, blocks=%d", method, seconds, len(scores))
    save_scores(outputs["scores"], scores, meta)
