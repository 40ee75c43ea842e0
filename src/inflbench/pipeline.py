"""The workflow stages as plain functions (the scripts/ adapters call these; tests call them directly)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from inflbench import data as data_mod
from inflbench.gradients import fingerprint, index_path, input_embedding, merge_stores, present_tokens, read_index
from inflbench.metrics import detection_auc, detection_curve, detection_rate_at
from inflbench.models import get_family, iterate_batches, load_trainable, pick_device
from inflbench.training import TrainArgs, finetune, predictions
from inflbench.workflow import peak_rss_mb, write_provenance, write_table

log = logging.getLogger("inflbench")


def _num_labels(frames: list[pd.DataFrame]) -> int:
    return int(max(max(f["label"].max(), f["clean_label"].max()) for f in frames) + 1)


def stage_prepare_data(data_cfg: dict, task: str, seed: int, outputs: dict[str, str]) -> None:
    tables = data_mod.prepare_splits(data_cfg, task, seed)
    for split, frame in tables.items():
        write_table(frame, outputs[split], {"data": data_cfg, "task": task, "seed": seed})
        log.info("%s: %d rows, %d flipped", split, len(frame), int(frame["flipped"].sum()))


def _family_and_splits(model_cfg: dict, split_paths: dict[str, str]):
    frames = {k: data_mod.read_split(p) for k, p in split_paths.items()}
    family = get_family(model_cfg, num_labels=_num_labels(list(frames.values())))
    return family, frames


def stage_finetune(model_cfg: dict, train_cfg: dict, seed: int, device: str, split_paths: dict[str, str],
                   out_adapter: str, out_curve: str, out_predictions: str) -> None:
    family, frames = _family_and_splits(model_cfg, split_paths)
    encoded = {k: family.encode(f) for k, f in frames.items()}
    model = family.build(seed)
    dev = pick_device(device)
    args = TrainArgs(seed=seed, **train_cfg)
    state, curve = finetune(family, model, encoded["train"], encoded["val"], args, dev,
                            test=encoded.get("test"), log=log.info)
    provenance = {"model": model_cfg, "train": train_cfg, "seed": seed}
    Path(out_adapter).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, out_adapter,
              metadata={"inflbench": json.dumps(provenance), "best_epoch": str(int(curve.loc[curve["best"], "epoch"].iloc[0]))})
    write_table(curve, out_curve, provenance)
    load_trainable(model, state)
    model.to(dev)
    preds = predictions(family, model, {k: v.to(dev) for k, v in encoded["val"].items()}, args.eval_batch_size)
    preds.insert(0, "id", frames["val"]["id"].to_numpy())
    write_table(preds, out_predictions, provenance)


def load_finetuned(model_cfg: dict, seed: int, adapter: str, split_paths: dict[str, str], device: str):
    family, frames = _family_and_splits(model_cfg, split_paths)
    model = family.build(seed)
    load_trainable(model, load_file(adapter))
    model.to(pick_device(device)).eval()
    return family, model, frames


def stage_gradients(model_cfg: dict, grad_cfg: dict, seed: int, device: str, adapter: str,
                    split_paths: dict[str, str], split: str, out: str, chunk: tuple[int, int] = (0, 1)) -> None:
    """Per-sample gradients of the selected blocks (``gradients.blocks``), streamed batch by batch into the
    store; ``chunk`` = (i, k): only the i-th of k contiguous sample ranges (merged by :func:`stage_merge_gradients`)."""
    from inflbench.gradients import stream_gradients, trainable_blocks
    from inflbench.store import select_blocks

    family, model, frames = load_finetuned(model_cfg, seed, adapter, split_paths, device)
    trainable = list(trainable_blocks(model))
    blocks = select_blocks(trainable, grad_cfg.get("blocks"))
    log.info("storing %d of %d trainable blocks (gradients.blocks); left out: %s", len(blocks), len(trainable),
             sorted(set(trainable) - set(blocks))[:5])
    dev = next(model.parameters()).device
    frame = frames[split]
    i, k = chunk
    rows = np.array_split(np.arange(len(frame)), k)[i]
    frame = frame.iloc[rows[0]:rows[-1] + 1] if len(rows) else frame.iloc[:0]
    encoded = family.encode(frame)
    batches = ({k: v.to(dev) for k, v in b.items()} for b in iterate_batches(encoded, grad_cfg["batch_size"]))
    tokens, extra = None, {}
    if grad_cfg.get("word_embeddings"):  # WE block over the tokens of all task splits (seed 003)
        tokens = present_tokens(family.encode(f) for f in frames.values())
        extra = {"word_embeddings": {"block": input_embedding(model)[0], "token_ids": tokens.tolist()}}
    meta = {"split": split, "model": model_cfg, "seed": seed, **extra,
            "fingerprint": fingerprint({"model": model_cfg, "seed": seed, "adapter": Path(adapter).stat().st_size})}
    start = time.perf_counter()
    n_blocks = stream_gradients(out, model, batches, family.per_sample_loss, frame["id"].tolist(), meta,
                                family.rows_per_sample, dtype=getattr(torch, grad_cfg["dtype"]),
                                word_embeddings=tokens, blocks=blocks)
    seconds = time.perf_counter() - start
    index = read_index(out)
    index.update(seconds=seconds, peak_rss_mb=_peak_rss_mb())
    index_path(out).write_text(json.dumps(index, indent=1))
    log.info("%d blocks, %d samples, %.2fs", n_blocks, len(frame), seconds)


def stage_merge_gradients(parts: list[str], out: str) -> None:
    """One gradient store from the sample-chunk stores of ``gradients.chunks`` jobs."""
    seconds = sum(read_index(p).get("seconds", 0.0) for p in parts)
    merge_stores(parts, out, {"seconds": seconds, "chunks": len(parts)})


_peak_rss_mb = peak_rss_mb


def stage_scores(method: str, params: dict, train_grads: str, test_grads: str, out: str,
                 scores_cfg: dict | None = None, shard: tuple[int, int] = (0, 1)) -> None:
    """Scores of a gradient-based method, streamed group of blocks by group (``inflbench.scoring``);
    ``shard`` = (i, k) scores only the i-th of k block ranges (joined by ``scoring.merge_score_files``)."""
    from inflbench.scoring import score_stores

    score_stores(method, params, train_grads, test_grads, out, scores_cfg or {}, shard)


def stage_model_scores(method: str, params: dict, model_cfg: dict, seed: int, device: str, adapter: str,
                       split_paths: dict[str, str], target_split: str, batch_size: int, out: str) -> None:
    """Scores of a method that needs the model (``needs_model``, e.g. EK-FAC), same contract as
    :func:`stage_scores`: one ``(n_train, n_target)`` entry per trainable block plus ``total``."""
    from inflbench.gradients import trainable_blocks
    from inflbench.methods import get, make_params

    spec = get(method)
    if not spec.needs_model:
        raise ValueError(f"method {method!r} works on stored gradients; use stage_scores")
    p = make_params(method, **params)
    family, model, frames = load_finetuned(model_cfg, seed, adapter, split_paths, device)
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
    meta = {"method": method, "params": params, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}
    log.info("%s: %.3fs, blocks=%d", method, seconds, len(scores))
    save_scores(out, scores, meta, {"train": frames["train"]["id"].tolist(), "target": frames[target_split]["id"].tolist()})


def save_scores(path: str, scores: dict[str, torch.Tensor], meta: dict, ids: dict | None = None) -> None:
    """Per-block (n_train, n_test) scores plus the float64 ``total`` (the sum of the blocks unless given),
    written block by block; the metadata travels inside the file."""
    from inflbench.scoring import ScoreWriter

    blocks = [k for k in scores if k != "total"]
    n, m = next(iter(scores.values())).shape
    writer = ScoreWriter(path, blocks, n, m, {}, ids or {})
    for k, v in scores.items():
        writer.add(k, v.detach(), count="total" not in scores)
    writer.close(meta)


def read_scores_meta(path: str) -> dict:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        return json.loads(handle.metadata()["inflbench"])


def train_sample_scores(path: str) -> np.ndarray:
    """Score per training sample: mean over test samples of the total (n_train, n_test) influence."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        return handle.get_tensor("total").mean(1).numpy()


def stage_detection(scores_path: str, train_split: str, points: int, out_curve: str, out_summary: str,
                    method: str, task: str) -> None:
    flipped = data_mod.read_split(train_split)["flipped"].to_numpy(bool)
    scores = train_sample_scores(scores_path)
    if not np.isfinite(scores).all():
        raise ValueError(f"{scores_path}: non-finite scores; the method diverged")
    curve = detection_curve(scores, flipped, points)
    meta = read_scores_meta(scores_path)
    write_table(curve, out_curve, {"method": method, "task": task, "points": points})
    summary = {"task": task, "method": method, "auc": detection_auc(scores, flipped),
               "detection_at_20pct": detection_rate_at(scores, flipped, 0.2),
               "curve_area": float(np.trapezoid(curve["fraction_detected"], curve["fraction_inspected"])),
               "seconds": meta.get("seconds"), "peak_rss_mb": meta.get("peak_rss_mb"),
               "diverged": bool(meta.get("meta.diverged", False)), "n_train": len(scores),
               "n_flipped": int(flipped.sum())}
    Path(out_summary).write_text(json.dumps(summary, indent=1))


def stage_detection_table(summaries: list[str], out: str, provenance: dict) -> pd.DataFrame:
    frame = pd.DataFrame([json.loads(Path(p).read_text()) for p in summaries])
    frame = frame.sort_values(["task", "auc"], ascending=[True, False])
    write_table(frame, out, provenance)
    return frame


def stage_detection_figure(curves: dict[str, str], task: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for method, path in sorted(curves.items()):
        c = pd.read_csv(path)
        ax.plot(c["fraction_inspected"], c["fraction_detected"], label=method)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    ax.set(xlabel="fraction of training data inspected", ylabel="fraction of flipped labels found",
           title=f"Mislabeled-data detection: {task}", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
