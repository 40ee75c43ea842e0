"""Identification stages: per-test-point metrics of one method, the RRInf Table 2 table, the figure."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from inflbench.artifacts import read_json, read_scores, read_split, write_json, write_table
from inflbench.figures import BOX_MARKS, method_label, pyplot, save
from inflbench.health import health_columns, health_note
from inflbench.studies.identification.metrics import class_detection, pct, summarise


def _class_column(frame: pd.DataFrame) -> np.ndarray:
    """Classes for the pseudo labels: the clean labels (identification runs have no label noise)."""
    return frame["clean_label" if "clean_label" in frame else "label"].to_numpy()


def stage_identification(inputs: dict, outputs: dict, params: dict) -> dict:
    """Per-test-point metrics (CSV) and their summary (JSON) of one method's (n_train, n_test) scores.

    inputs scores, train, test; params method, task, model (section, optional) -> outputs points, summary."""
    scores_path, method, task = inputs["scores"], params["method"], params["task"]
    train, test = read_split(inputs["train"]), read_split(inputs["test"])
    arrays, meta = read_scores(scores_path, blocks=["total"])
    influence = arrays["total"]
    if influence.shape != (len(train), len(test)):
        raise ValueError(f"{scores_path}: scores have shape {influence.shape}, expected (n_train, n_test) = "
                         f"{(len(train), len(test))}; were they computed against the test split?")
    if not np.isfinite(influence).all():
        raise ValueError(f"{scores_path}: non-finite scores; the method diverged")
    points = class_detection(influence, _class_column(train), _class_column(test))
    points.insert(0, "test_id", test["id"].to_numpy())
    points.insert(1, "class", _class_column(test))
    if "class_name" in test:
        points.insert(2, "class_name", test["class_name"].to_numpy())
    write_table(points, outputs["points"], {"method": method, "task": task})
    model_cfg = dict(params.get("model") or {})
    counts = pd.Series(_class_column(train)).value_counts()
    summary = {"task": task, "method": method, "model": model_cfg.get("name_or_path"),
               "lora_r": model_cfg.get("lora", {}).get("r"), **summarise(points),
               "seconds": meta.get("seconds"), "peak_rss_mb": meta.get("peak_rss_mb"),
               "diverged": bool(meta.get("meta.diverged", False)), **health_columns(meta),
               "n_train": len(train), "n_test": len(test),
               "n_classes": int(counts.size),
               "train_per_class": int(counts.iloc[0]) if counts.nunique() == 1 else None}
    summary.update(model_accuracy(inputs.get("curve")))
    write_json(summary, outputs["summary"])
    return summary


def model_accuracy(curve_path: str | None) -> dict:
    """Test-split answer metrics of the kept checkpoint (causal LMs: exact match of the greedy answer, answer-token
    accuracy), from the fine-tune's training curve; empty when the family reports none."""
    if not curve_path:
        return {}
    curve = pd.read_csv(curve_path)
    kept = curve.loc[curve["best"]].iloc[0]
    return {f"model_{k}": float(kept[k]) for k in ("test_exact_match", "test_token_accuracy", "test_loss")
            if k in curve}


TABLE_COLUMNS = ["task", "model", "method", "auc", "recall", "seconds", "auc_mean", "auc_std", "recall_mean",
                 "recall_std", "n_train", "n_test", "n_test_scored", "n_classes", "train_per_class", "lora_r",
                 "peak_rss_mb", "diverged", "converged", "convergence", "model_test_exact_match",
                 "model_test_token_accuracy", "model_test_loss", "note"]


def identification_table(summaries: Iterable[dict]) -> pd.DataFrame:
    """RRInf Table 2 layout: one row per (task, method); formatted AUC/recall plus the raw numbers."""
    frame = pd.DataFrame(list(summaries))
    frame["auc"] = [pct(m, s) for m, s in zip(frame["auc_mean"], frame["auc_std"])]
    frame["recall"] = [pct(m, s) for m, s in zip(frame["recall_mean"], frame["recall_std"])]
    order = {m: k for k, m in enumerate(dict.fromkeys(frame["method"]))}  # keep the config's method order
    frame["note"] = [health_note(r) for r in frame.to_dict("records")]
    frame = frame.assign(_o=frame["method"].map(order)).sort_values(["task", "_o"], kind="stable").drop(columns="_o")
    return frame[[c for c in TABLE_COLUMNS if c in frame] + [c for c in frame if c not in TABLE_COLUMNS]]


def stage_identification_table(inputs: dict, outputs: dict, params: dict) -> pd.DataFrame:
    """inputs summaries; params config (provenance) -> outputs table."""
    frame = identification_table(read_json(p) for p in inputs["summaries"])
    write_table(frame, outputs["table"], dict(params["config"]))
    return frame


def stage_identification_figure(inputs: dict, outputs: dict, params: dict) -> None:
    """Box plots of per-test-point AUC and recall per method (means marked) for one task.

    inputs points (one per method of params methods); params task -> outputs figure."""
    plt = pyplot()
    points, task, out = dict(zip(params["methods"], inputs["points"])), params["task"], outputs["figure"]
    methods = list(points)
    frames = {m: pd.read_csv(points[m]) for m in methods}
    fig, axes = plt.subplots(1, 2, figsize=(2 + 1.1 * len(methods) * 2, 4))
    for ax, metric, label in zip(axes, ("auc", "recall"), ("class-detection AUC", "class-detection recall")):
        values = [frames[m][metric].dropna().to_numpy() for m in methods]
        ax.boxplot(values, showmeans=True)
        ax.set_xticks(range(1, len(methods) + 1), [method_label(m) for m in methods], rotation=30, ha="right")
        if metric == "auc":
            ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set(ylabel=label, ylim=(-0.02, 1.02))
    fig.suptitle(f"Influential-data identification: {task}")
    fig.text(0.5, -0.02, BOX_MARKS, ha="center", fontsize=8)
    fig.tight_layout()
    save(fig, out)
