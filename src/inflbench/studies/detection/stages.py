"""Mislabeled-data detection (RRInf / DataInf): how early each method's scores rank the flipped training labels.

Stages: ``stage_detection`` (curve + summary of one method), ``stage_detection_table`` (AUC, detection rate at
20%, runtime, memory per task and method), ``stage_detection_figure`` (curves of all methods of a task).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from inflbench.artifacts import read_json, read_scores_meta, read_split, train_sample_scores, write_json, write_table
from inflbench.figures import method_label, pyplot, save
from inflbench.health import health_columns, health_note
from inflbench.metrics import average_ranks, detection_auc, detection_curve, detection_rate_at

log = logging.getLogger("inflbench")


def stage_detection(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs scores, train; params points, method, task -> outputs curve, summary."""
    scores_path, method, task, points = inputs["scores"], params["method"], params["task"], params["points"]
    flipped = read_split(inputs["train"])["flipped"].to_numpy(bool)
    scores = train_sample_scores(scores_path)
    if not np.isfinite(scores).all():
        raise ValueError(f"{scores_path}: non-finite scores; the method diverged")
    curve = detection_curve(scores, flipped, points)
    meta = read_scores_meta(scores_path)
    write_table(curve, outputs["curve"], {"method": method, "task": task, "points": points})
    summary = {"task": task, "method": method, "auc": detection_auc(scores, flipped),
               "detection_at_20pct": detection_rate_at(scores, flipped, 0.2),
               "detection_at_40pct": detection_rate_at(scores, flipped, 0.4),  # HyperINF Table 2
               "curve_area": float(np.trapezoid(curve["fraction_detected"], curve["fraction_inspected"])),
               "seconds": meta.get("seconds"), "peak_rss_mb": meta.get("peak_rss_mb"),
               "diverged": bool(meta.get("meta.diverged", False)), "n_train": len(scores),
               "n_flipped": int(flipped.sum()), **health_columns(meta)}
    write_json(summary, outputs["summary"])


def stage_detection_table(inputs: dict, outputs: dict, params: dict) -> pd.DataFrame:
    """inputs summaries; params config (provenance) -> outputs table."""
    frame = pd.DataFrame([read_json(p) for p in inputs["summaries"]])
    frame = frame.sort_values(["task", "auc"], ascending=[True, False])
    frame["note"] = [health_note(r) for r in frame.to_dict("records")]
    for row in frame[frame["note"] != ""].to_dict("records"):
        log.warning("%s %s: %s", row["task"], row["method"], row["note"])
    write_table(frame, outputs["table"], dict(params["config"]))
    return frame


def leaderboard(table: pd.DataFrame) -> pd.DataFrame:
    """One row per method, best first: mean rank of its AUC over tasks (1 = best), mean AUC, AUC per task
    (mean and std over replicate rows, e.g. seeds), runtime (mean per task, summed over tasks) and peak memory."""
    per = table.groupby(["task", "method"], sort=True).agg(auc=("auc", "mean"), std=("auc", "std"),
                                                          seconds=("seconds", "mean"),
                                                          peak_rss_mb=("peak_rss_mb", "max")).reset_index()
    per["rank"] = per.groupby("task")["auc"].transform(lambda a: average_ranks(-a.to_numpy(float)))
    board = per.groupby("method").agg(rank=("rank", "mean"), auc_mean=("auc", "mean"),
                                      seconds=("seconds", "sum"), peak_rss_mb=("peak_rss_mb", "max"))
    for task, rows in per.groupby("task"):
        board[f"auc_{task}"] = rows.set_index("method")["auc"]
        if rows["std"].notna().any():
            board[f"auc_std_{task}"] = rows.set_index("method")["std"]
    front = ["rank", "auc_mean", *[c for c in board if c.startswith("auc_") and c != "auc_mean"]]
    board = board[front + ["seconds", "peak_rss_mb"]].sort_values(["rank", "auc_mean"], ascending=[True, False])
    return board.reset_index()


def stage_leaderboard(inputs: dict, outputs: dict, params: dict) -> pd.DataFrame:
    """inputs tables (the detection table of each replicate seed) -> outputs table (leaderboard)."""
    tables = [str(t) for t in inputs["tables"]]
    board = leaderboard(pd.concat([pd.read_csv(t) for t in tables], ignore_index=True))
    write_table(board, outputs["table"], {"from": tables})
    return board


def stage_detection_figure(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs curves (one per method of params methods); params task -> outputs figure."""
    plt = pyplot()
    curves, task, out = dict(zip(params["methods"], inputs["curves"])), params["task"], outputs["figure"]
    fig, ax = plt.subplots(figsize=(5, 4))
    for method, path in sorted(curves.items()):
        c = pd.read_csv(path)
        ax.plot(c["fraction_inspected"], c["fraction_detected"], label=method_label(method))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    ax.set(xlabel="fraction of training data inspected", ylabel="fraction of flipped labels found",
           title=f"Mislabeled-data detection: {task}", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    save(fig, out)
