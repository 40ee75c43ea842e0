"""LoRA fine-tuning for any model family; keeps the checkpoint chosen by ``train.select_by`` (default: the lowest
validation loss)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pandas as pd
import torch

from inflbench.errors import ConfigError
from inflbench.models import Batch, ModelFamily, iterate_batches, trainable_state
from inflbench.progress import Progress


class TrainingDiverged(ConfigError):
    """A non-finite loss during fine-tuning; names the config key most likely at fault."""


@dataclass(frozen=True)
class TrainArgs:
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 0.0
    seed: int = 0
    eval_batch_size: int = 64
    precision: str = "float32"  # float32 | tf32 | bfloat16 (the latter two on CUDA only)
    select_by: str = "val_loss"  # val_loss | val_accuracy | last: which epoch's checkpoint is kept


def precision_context(precision: str, device: torch.device):
    """Autocast / TF32 for the training steps on CUDA (``train.precision``); a no-op elsewhere."""
    import contextlib

    if torch.device(device).type != "cuda" or precision == "float32":
        return contextlib.nullcontext()
    if precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


@torch.no_grad()
def evaluate(family: ModelFamily, model, data: Batch, batch_size: int) -> dict[str, float]:
    """Mean loss (and accuracy where the family predicts classes) on an encoded split."""
    model.eval()
    losses, correct, count, answers = [], 0, 0, []
    for batch in iterate_batches(data, batch_size):
        scores = family.answer_scores(model, batch)  # generating families: the loss comes with it (one forward)
        if scores is not None:
            answers.append(scores)
        losses.append(scores["loss"] if scores is not None else family.per_sample_loss(model, batch))
        pred = family.predict(model, batch)
        if pred is not None:
            correct += int((pred == family.labels(batch)).sum())
            count += len(pred)
    out = {"loss": float(torch.cat(losses).mean())}
    if count:
        out["accuracy"] = correct / count
    for key in ("token_accuracy", "exact_match") if answers else ():  # generated answers (causal LMs)
        out[key] = float(torch.cat([a[key] for a in answers]).mean())
    return out


@torch.no_grad()
def predictions(family: ModelFamily, model, data: Batch, batch_size: int) -> pd.DataFrame:
    """Per-sample loss, label and prediction of an encoded split."""
    model.eval()
    rows = {"loss": [], "label": [], "prediction": []}
    for batch in iterate_batches(data, batch_size):
        rows["loss"].append(family.per_sample_loss(model, batch))
        pred = family.predict(model, batch)
        labels = family.labels(batch)
        if pred is not None:
            rows["prediction"].append(pred)
        if labels is not None:
            rows["label"].append(labels)
    frame = pd.DataFrame({k: torch.cat(v).cpu().numpy() for k, v in rows.items() if v})
    if "prediction" in frame:
        frame["correct"] = frame["prediction"] == frame["label"]
    return frame


def finetune(family: ModelFamily, model, train: Batch, val: Batch, args: TrainArgs,
             device: torch.device, test: Batch | None = None, log=print) -> tuple[dict, pd.DataFrame]:
    """Train the trainable parameters with AdamW; returns (best trainable state, per-epoch curve).

    Epoch 0 in the curve is the initial model; the kept state is the best by ``args.select_by``
    (:func:`checkpoint_rank`; ties keep the earlier epoch).
    """
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    generator = torch.Generator().manual_seed(args.seed)
    n = next(iter(train.values())).shape[0]
    on_device = lambda b: {k: v.to(device) for k, v in b.items()}  # noqa: E731

    def record(epoch: int, train_loss: float, seconds: float) -> dict:
        row = {"epoch": epoch, "train_loss": train_loss, "seconds": seconds}
        row.update({f"val_{k}": v for k, v in evaluate(family, model, on_device(val), args.eval_batch_size).items()})
        if test is not None:
            row.update({f"test_{k}": v for k, v in
                        evaluate(family, model, on_device(test), args.eval_batch_size).items()})
        log(f"epoch {epoch}/{args.epochs}: " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                       for k, v in row.items() if k != "epoch"))
        return row

    curve = [record(0, math.nan, 0.0)]
    _check_finite(curve[0]["val_loss"], "validation loss of the initial model", "model")
    if args.select_by == "val_accuracy" and "val_accuracy" not in curve[0]:
        raise ConfigError("train.select_by", "val_accuracy needs a model family that predicts labels; "
                          "use val_loss or last")
    best, best_state = curve[0], trainable_state(model)
    steps = Progress("fine-tune", args.epochs * math.ceil(n / args.batch_size), "steps", log=log)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        model.train()
        total = 0.0
        for step, batch in enumerate(iterate_batches(train, args.batch_size, torch.randperm(n, generator=generator))):
            with precision_context(args.precision, device):
                loss = family.per_sample_loss(model, on_device(batch)).mean()
            value = loss.item()
            _check_finite(value, f"training loss at epoch {epoch}, batch {step + 1}")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += value * next(iter(batch.values())).shape[0]
            steps.update(note=f"(epoch {epoch}/{args.epochs})")
        curve.append(record(epoch, total / n, time.perf_counter() - start))
        _check_finite(curve[-1]["val_loss"], f"validation loss after epoch {epoch}")
        if checkpoint_rank(curve[-1], args.select_by) < checkpoint_rank(best, args.select_by):
            best, best_state = curve[-1], trainable_state(model)
    frame = pd.DataFrame(curve)
    frame["best"] = frame["epoch"] == best["epoch"]
    frame["selection"] = ""
    frame.loc[frame["best"].idxmax(), "selection"] = selection_reason(frame, args.select_by)
    if int(best["epoch"]) == 0:
        log(f"WARNING: {selection_reason(frame, args.select_by)}")
    return best_state, frame


def checkpoint_rank(row: dict, select_by: str) -> tuple:
    """Sort key of a curve row for ``train.select_by`` (smaller = kept)."""
    if select_by == "last":
        return (-row["epoch"],)
    if select_by == "val_accuracy":  # ties: the lower validation loss
        return (-row["val_accuracy"], row["val_loss"])
    return (row["val_loss"],)


SELECTION = {"val_loss": "lowest validation loss", "val_accuracy": "highest validation accuracy (ties: lower loss)",
             "last": "last epoch"}


def selection_reason(curve: pd.DataFrame, select_by: str = "val_loss") -> str:
    """Why the kept checkpoint is the one it is (written to the curve, the adapter and the tables)."""
    best = int(curve.loc[curve["best"], "epoch"].iloc[0])
    last = int(curve["epoch"].max())
    if best == 0:
        what = "lowered the validation loss" if select_by == "val_loss" else "raised the validation accuracy"
        return f"epoch 0 of {last}: no fine-tuning epoch {what}, so the untrained model is kept"
    return f"epoch {best} of {last}: {SELECTION[select_by]}"


def _check_finite(value: float, what: str, key: str = "train.lr") -> None:
    if not math.isfinite(value):
        raise TrainingDiverged(key, f"the {what} is {value}; the fine-tune stopped (no checkpoint is written) -- "
                               "lower the learning rate or check the data")
