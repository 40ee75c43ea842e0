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
from inflbench.health import health_columns, health_note
from inflbench.metrics import detection_auc, detection_curve, detection_rate_at

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


def stage_detection_figure(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs curves (one per method of params methods); params task -> outputs figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves, task, out = dict(zip(params["methods"], inputs["curves"])), params["task"], outputs["figure"]
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
