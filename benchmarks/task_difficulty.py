"""How hard a run's task is: test accuracy of three fine-tunes per seed, each with the run's model and training.

    python benchmarks/task_difficulty.py                       # config.yaml, seeds 0 1 2
    python benchmarks/task_difficulty.py --configfile configs/test.yaml --seeds 0

``clean``: every training sample with its true label; ``noisy``: the flipped labels as the workflow trains
(= the layer study's "No filter"); ``oracle``: the noisy split without its flipped samples (the layer study's
oracle filter). Accuracy is read at the epoch of lowest validation loss, as the workflow selects it. Prints
per-seed rows and mean ± std over seeds; ``--csv`` keeps the rows.
"""
from __future__ import annotations

import argparse
import copy
import time

import pandas as pd
import torch
import yaml

from inflbench.checks import merge_overlay
from inflbench.config import validate_config
from inflbench.data import prepare_splits
from inflbench.models import get_family, pick_device
from inflbench.training import TrainArgs, finetune


def variants(train: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The three training sets of one split: clean labels, noisy labels, noisy without the flipped samples."""
    return {"clean": train.assign(label=train["clean_label"]), "noisy": train,
            "oracle": train[~train["flipped"]].reset_index(drop=True)}


def difficulty_rows(cfg: dict, seeds, device, report=print) -> pd.DataFrame:
    """One row per (seed, task, training set) of a validated config: size, test accuracy at the selected epoch,
    that epoch and seconds; ``report`` gets each row as it finishes."""
    rows = []
    for seed in seeds:
        for task in cfg["data"]["tasks"]:
            frames = prepare_splits(cfg["data"], task, seed)
            family = get_family(cfg["model"], num_labels=int(frames["train"]["clean_label"].max()) + 1)
            val, test = family.encode(frames["val"]), family.encode(frames["test"])
            for name, train in variants(frames["train"]).items():
                start = time.perf_counter()
                _, curve = finetune(family, family.build(seed), family.encode(train), val,
                                    TrainArgs(seed=seed, **cfg["train"]), device, test=test, log=lambda *a: None)
                best = curve.loc[curve["best"]].iloc[0]
                rows.append({"seed": seed, "task": task, "train": name, "n_train": len(train),
                             "test_accuracy": float(best["test_accuracy"]), "best_epoch": int(best["epoch"]),
                             "seconds": round(time.perf_counter() - start, 1)})
                report(rows[-1])
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="*", default=[], help="overlays of config.yaml, as for snakemake")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    raw = yaml.safe_load(open("config.yaml"))
    for path in args.configfile:
        raw = merge_overlay(raw, yaml.safe_load(open(path)))
    cfg = validate_config(copy.deepcopy(raw))
    frame = difficulty_rows(cfg, args.seeds, pick_device(cfg["device"]), lambda row: print(row, flush=True))
    if args.csv:
        frame.to_csv(args.csv, index=False)
    summary = frame.groupby(["task", "train"], sort=False)["test_accuracy"].agg(["mean", "std", "count"])
    print((summary * [100, 100, 1]).round(1).to_string())


if __name__ == "__main__":
    main()
