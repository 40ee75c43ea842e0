"""The functions behind the ``layers_*`` rules (scripts/layers_*.py are one-screen adapters).

Selectors name one training subset; their ids double as output sub-paths:
``filter/<method>/<group>/<agg>`` (drop the p most harmful; method ``ensemble`` with group = ensemble name for
``layers.ensembles``), ``baseline/{random,oracle,full}``,
``select/<method>/<group>/<agg>/k<pct>`` and ``select/random/k<pct>`` (keep the k most beneficial / k at
random), ``logo/<method>/<group>/<agg>/g<j>`` (drop the j-th of K score-sorted groups, j = 0 most harmful).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from inflbench import metrics
from inflbench.artifacts import LazyScores, read_split, write_table
from inflbench.studies.layer_choice import aggregate as agg_mod
from inflbench.studies.layer_choice import metrics as lm

log = logging.getLogger("inflbench")
ENSEMBLE = "ensemble"  # pseudo-method of layers.ensembles (its "groups" are the ensemble names)
TOTAL = "total"  # the one group of a method that scores only the whole model (layers.total_only)
LAYER_RE = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


# ---------------------------------------------------------------- selectors
def selectors(lay: dict) -> dict[str, dict]:
    """Every training subset the config asks for: id -> spec (kind, method, group, agg, fraction, index).

    Filtering covers the declared groups (the implicit ``all`` only when declared); selection and LOGO
    cover ``selection_groups``. A method of ``total_only`` (it couples blocks) has the single group ``total``."""
    out: dict[str, dict] = {}
    p = lay["filter_fraction"]
    total_only = set(lay.get("total_only") or ())

    def groups_of(m: str, groups) -> list[str]:
        return [TOTAL] if m in total_only else list(groups)

    for m in lay["methods"]:
        for g in groups_of(m, lay["groups"]):
            for a in lay["aggregations"]:
                out[f"filter/{m}/{g}/{a}"] = {"kind": "filter", "method": m, "group": g, "agg": a, "fraction": p}
    for e in lay.get("ensembles", {}):
        for a in lay["aggregations"]:
            out[f"filter/{ENSEMBLE}/{e}/{a}"] = {"kind": "filter", "method": ENSEMBLE, "group": e, "agg": a,
                                                 "fraction": p}
    for b in list(lay["baselines"]) + (["full"] if lay["logo_groups"] and "full" not in lay["baselines"] else []):
        out[f"baseline/{b}"] = {"kind": b, "fraction": p}
    a = lay["selection_aggregation"]
    for k in lay["selection_keep"]:
        out[f"select/random/k{round(100 * k)}"] = {"kind": "select_random", "fraction": k}
        for m in lay["methods"]:
            for g in groups_of(m, lay["selection_groups"]):
                out[f"select/{m}/{g}/{a}/k{round(100 * k)}"] = {"kind": "select", "method": m, "group": g,
                                                                "agg": a, "fraction": k}
    for j in range(lay["logo_groups"]):
        for m in lay["methods"]:
            for g in groups_of(m, lay["selection_groups"]):
                out[f"logo/{m}/{g}/{a}/g{j}"] = {"kind": "logo", "method": m, "group": g, "agg": a,
                                                 "index": j, "groups": lay["logo_groups"]}
    seeds = list(lay["retrain_seeds"])
    sel_seeds = list(lay.get("selection_seeds") or seeds)
    for sid, spec in out.items():
        if spec["kind"] in ("select", "select_random", "logo"):
            spec["seeds"] = sel_seeds
        elif spec["kind"] == "full":  # the reference of LOGO's validation-loss change
            base = set(seeds) if "full" in lay["baselines"] else set()
            spec["seeds"] = sorted(base | (set(sel_seeds) if lay["logo_groups"] else set()))
        else:
            spec["seeds"] = seeds
    return out


def keep_mask(spec: dict, scores: np.ndarray | None, flipped: np.ndarray, seed: int) -> np.ndarray:
    """Boolean keep mask of one selector (scores: aggregated harmfulness, higher = more harmful)."""
    n = len(flipped)
    rng = np.random.default_rng(seed)
    keep = np.ones(n, bool)
    kind = spec["kind"]
    if kind == "full":
        return keep
    if kind == "random":
        keep[rng.choice(n, int(round(spec["fraction"] * n)), replace=False)] = False
    elif kind == "oracle":
        keep[flipped] = False
        extra = int(round(spec["fraction"] * n)) - int(flipped.sum())
        if extra > 0:
            keep[rng.choice(np.flatnonzero(~flipped), extra, replace=False)] = False
    elif kind == "select_random":
        keep[:] = False
        keep[rng.choice(n, int(round(spec["fraction"] * n)), replace=False)] = True
    else:
        order = np.argsort(-np.asarray(scores, float), kind="stable")  # most harmful first
        if kind == "filter":
            keep[order[:int(round(spec["fraction"] * n))]] = False
        elif kind == "select":
            keep[:] = False
            keep[order[::-1][:int(round(spec["fraction"] * n))]] = True
        elif kind == "logo":
            keep[np.array_split(order, spec["groups"])[spec["index"]]] = False
        else:
            raise ValueError(f"unknown selector kind {kind!r}")
    return keep


# ---------------------------------------------------------------- aggregation and metrics per method
def layer_of(block: str) -> int | None:
    m = LAYER_RE.search("." + block)
    return int(m.group(1)) if m else None


def module_of(block: str) -> str:
    """Short module name: ``query.lora_A``, ``value.lora_B``, ``classifier`` ..."""
    parts = block.split(".")
    if layer_of(block) is None:
        return block
    return ".".join(parts[-2:]) if parts[-1].startswith("lora_") else parts[-1]


def stage_aggregate(inputs: dict, out: dict, params: dict) -> None:
    """Group x aggregation scores, NDR@p / NDR-AUC, NDR curves, noise deciles and per-block NDR of one method.

    inputs scores, train, predictions; params groups, layers, method, task -> outputs scores, ndr, curve,
    deciles, blocks."""
    scores_path, groups, lay = inputs["scores"], params["groups"], params["layers"]
    method, task, val_predictions = params["method"], params["task"], inputs["predictions"]
    scores = LazyScores(scores_path)  # blocks read when aggregated
    blocks = [b for b in scores if b != "total"]
    members = {g: agg_mod.match_blocks(patterns, blocks) for g, patterns in groups.items()}
    if not blocks:  # a method that couples blocks: its per-sample score is the whole model's total
        blocks, members = ["total"], {TOTAL: ["total"]}
    for g, m in members.items():
        if not m:
            raise ValueError(f"layers.groups.{g}: {groups[g]} matches no block of {scores_path}")
    train = read_split(inputs["train"])
    _aggregate_outputs({g: [(scores, m)] for g, m in members.items()}, train, val_predictions, lay, method,
                       task, out)
    flipped = train["flipped"].to_numpy(bool)
    per_block = [{"task": task, "method": method, "block": b, "layer": layer_of(b), "module": module_of(b),
                  "ndr": metrics.ndr_at(scores[b].mean(1), flipped, lay["filter_fraction"])} for b in blocks]
    write_table(pd.DataFrame(per_block), out["blocks"], {"method": method, "task": task, "layers": lay})


def _aggregate_outputs(sources: dict, train: pd.DataFrame, val_predictions: str, lay: dict, method: str, task: str,
                       out: dict[str, str]) -> None:
    """Score table, NDR@p / NDR-AUC, NDR curves and noise deciles; ``sources``: column name -> list of
    (scores, blocks) parts whose columns are aggregated together (one part per group; several for an ensemble)."""
    from inflbench.studies.layer_choice import vote_k

    flipped = train["flipped"].to_numpy(bool)
    correct = pd.read_csv(val_predictions)["correct"].to_numpy(bool)
    k = vote_k(lay, len(flipped))
    p = lay["filter_fraction"]
    table = pd.DataFrame({"id": train["id"].to_numpy(), "flipped": flipped})
    rows, curves, hists = [], [], []
    for g, parts in sources.items():
        for a in lay["aggregations"]:
            s = agg_mod.stacked_scores(parts, a, correct, k)
            table[f"{g}|{a}"] = s
            rows.append({"task": task, "method": method, "group": g, "agg": a,
                         "n_blocks": sum(len(bl) for _, bl in parts),
                         "n_val_used": int(len(correct) if a == "mean" else correct.sum()),
                         "ndr": metrics.ndr_at(s, flipped, p), "ndr_auc": metrics.ndr_auc(s, flipped), "p": p})
            curves.append(metrics.ndr_curve(s, flipped, lay["ndr_points"]).assign(group=g, agg=a))
            hists.append(lm.noise_histogram(s, flipped).assign(group=g, agg=a))
    prov = {"method": method, "task": task, "layers": lay, "vote_k": k}
    write_table(table, out["scores"], prov)
    write_table(pd.DataFrame(rows), out["ndr"], prov)
    write_table(pd.concat(curves).assign(method=method, task=task), out["curve"], prov)
    write_table(pd.concat(hists).assign(method=method, task=task), out["deciles"], prov)


def stage_ensemble(inputs: dict, out: dict, params: dict) -> None:
    """``layers.ensembles``: per ensemble, the columns of its methods x groups stacked, then each aggregation
    (the same operators as a single group); written as pseudo-method ``ensemble`` with group = ensemble name.

    inputs scores (one per method of params methods), train, predictions; params methods, groups, layers, task."""
    score_paths = dict(zip(params["methods"], inputs["scores"]))
    groups, lay, task = params["groups"], params["layers"], params["task"]
    scores = {m: LazyScores(path) for m, path in score_paths.items()}
    sources = {}
    for name, ens in lay["ensembles"].items():
        sources[name] = []
        for m in ens["methods"]:
            blocks = [b for b in scores[m] if b != "total"]
            for g in ens["groups"]:
                members = agg_mod.match_blocks(groups[g], blocks)
                if not members:
                    raise ValueError(f"layers.ensembles.{name}: group {g} matches no block of {score_paths[m]}")
                sources[name].append((scores[m], members))
    _aggregate_outputs(sources, read_split(inputs["train"]), inputs["predictions"], lay, ENSEMBLE, task, out)


def block_sums(store, name: str, max_bytes: int = 64 << 20) -> dict[str, np.ndarray]:
    """Running float64 sums of one block, read row chunk by row chunk: ``abs`` = sum_i |g_i| and ``sum`` =
    sum_i g_i per parameter, ``sq`` = ||g_i||^2 per sample."""
    import torch

    abs_sum = total = None
    sq = []
    for _, rows in store.row_chunks(name, max_bytes):
        g = rows.reshape(rows.shape[0], -1).to(torch.float64)
        a, t = g.abs().sum(0), g.sum(0)
        abs_sum, total = (a, t) if abs_sum is None else (abs_sum + a, total + t)
        sq.append((g * g).sum(1))
    return {"abs": abs_sum.numpy(), "sum": total.numpy(), "sq": torch.cat(sq).numpy()}


def stage_cancellation(inputs: dict, outputs: dict, params: dict) -> None:
    """C(W) per parameter summarised per block and per group (layer-choice paper Table 1) + layer-level C(W);
    the store is read one row chunk of one block at a time (running per-parameter sums).

    inputs grads (training gradients); params groups, extreme, task -> outputs cancellation."""
    from inflbench.store import TensorStore

    groups, extreme, task = params["groups"], params["extreme"], params["task"]
    store = TensorStore(inputs["grads"])
    sums = {b: block_sums(store, b) for b in store.names}
    per_param = {b: lm.cancellation_from_sums(s["abs"], s["sum"]) for b, s in sums.items()}
    rows = [{"task": task, "level": "block", "name": b, "layer": layer_of(b), "module": module_of(b),
             "layer_C": lm.layer_cancellation_from(np.sqrt(sums[b]["sq"]), float(np.linalg.norm(sums[b]["sum"]))),
             **lm.cancellation_summary(c, extreme)}
            for b, c in per_param.items()]
    for g, patterns in groups.items():
        members = agg_mod.match_blocks(patterns, list(sums))
        c = np.concatenate([per_param[b] for b in members])
        norms = np.sqrt(sum(sums[b]["sq"] for b in members))
        sum_norm = float(np.sqrt(sum(np.dot(sums[b]["sum"], sums[b]["sum"]) for b in members)))
        rows.append({"task": task, "level": "group", "name": g, "layer": None, "module": None,
                     "layer_C": lm.layer_cancellation_from(norms, sum_norm), **lm.cancellation_summary(c, extreme)})
    write_table(pd.DataFrame(rows), outputs["cancellation"], {"task": task, "groups": groups, "extreme": extreme})


def stage_mask(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs train (+ scores: the method's layer score table, for score-based selectors); params spec, seed
    -> outputs mask (the kept training ids)."""
    spec, scores_csv, seed, out = params["spec"], inputs.get("scores"), int(params["seed"]), outputs["mask"]
    train = read_split(inputs["train"])
    scores = None
    if scores_csv is not None and "method" in spec:
        scores = pd.read_csv(scores_csv)[f"{spec['group']}|{spec['agg']}"].to_numpy()
    keep = keep_mask(spec, scores, train["flipped"].to_numpy(bool), seed)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": train["id"].to_numpy()[keep]}).to_csv(out, index=False)
    log.info("%s: keep %d of %d (%d flipped kept)", spec, keep.sum(), len(keep),
             int(train["flipped"].to_numpy(bool)[keep].sum()))


# ---------------------------------------------------------------- retraining
def stage_retrain(inputs: dict, outputs: dict, params: dict) -> None:
    """Fine-tune on the kept training ids from the scored checkpoint's initialisation (``init_seed``) with the
    same hyperparameters, shuffling with ``seed``; writes the curve summary only (no checkpoint).

    inputs train/val/test, keep; params model, train, init_seed, device, spec, selector, task, seed -> outputs run."""
    from inflbench.models import pick_device
    from inflbench.stages import family_and_splits
    from inflbench.training import TrainArgs, finetune

    model_cfg, train_cfg, init_seed, device = params["model"], params["train"], params["init_seed"], params["device"]
    seed, keep_csv, out = int(params["seed"]), inputs["keep"], outputs["run"]
    spec = {k: v for k, v in dict(params["spec"]).items() if k != "seeds"}
    meta = {**spec, "selector": params["selector"], "task": params["task"]}
    family, frames = family_and_splits(model_cfg, inputs)
    kept = set(pd.read_csv(keep_csv)["id"])
    train = frames["train"][frames["train"]["id"].isin(kept)].reset_index(drop=True)
    model = family.build(init_seed)
    args = TrainArgs(seed=seed, **train_cfg)
    _, curve = finetune(family, model, family.encode(train), family.encode(frames["val"]), args,
                        pick_device(device), test=family.encode(frames["test"]), log=log.info)
    best = curve.loc[curve["best"]].iloc[0]
    summary = {**meta, "seed": seed, "n_train": len(train), "n_flipped_kept": int(train["flipped"].sum()),
               "best_test_accuracy": float(curve["test_accuracy"].max()),
               "test_accuracy_at_best_val": float(best["test_accuracy"]),
               "best_val_loss": float(curve["val_loss"].min()), "best_epoch": int(best["epoch"]),
               "curve": curve.to_dict(orient="list")}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(summary, indent=1, default=float))
