"""Tables and figures of the layer study from the retraining summaries and the no-retraining metrics.

Tables: runs (one row per retraining), ranking (the layer-choice paper Tables 4-6: mean rank, win rate, accuracy per
task), layer_ranks (Table 3: group ranks per method and aggregation), winrate matrix, pareto, wilcoxon,
correlation (Table 2: Spearman of C, NDR, NDR-AUC with post-filter accuracy), cancellation (Table 1),
selection (RRInf Table 3 layout) and logo (HyperINF Table 6).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from inflbench.studies.layer_choice import stats as st
from inflbench.artifacts import write_table
from inflbench.figures import BOX_MARKS, method_label, pyplot, save

ACC = "best_test_accuracy"


def load_runs(paths: list[str]) -> pd.DataFrame:
    rows = []
    for p in paths:
        d = json.loads(Path(p).read_text())
        d.pop("curve", None)
        rows.append(d)
    runs = pd.DataFrame(rows)
    for col in ("method", "group", "agg"):
        if col not in runs:
            runs[col] = None
    return runs


def _config_name(r) -> str:
    if r["kind"] == "filter":
        return f"{r['method']}|{r['group']}|{r['agg']}"
    return {"random": "Random", "oracle": "Full (oracle)", "full": "No filter"}.get(r["kind"], r["selector"])


def _mean_std(x: pd.Series) -> str:
    return f"{100 * x.mean():.1f} ± {100 * x.std(ddof=0):.1f}"


def filter_tables(runs: pd.DataFrame, ndr: pd.DataFrame, canc: pd.DataFrame, threshold: float) -> dict[str, pd.DataFrame]:
    f = runs[runs["kind"].isin(["filter", "random", "oracle", "full"])].copy()
    f["config"] = f.apply(_config_name, axis=1)
    f["accuracy"] = f[ACC]
    ranking = st.mean_rank(f)
    per_task = f.groupby(["config", "task"])["accuracy"].apply(_mean_std).unstack("task")
    ranking = ranking.merge(per_task, left_on="config", right_index=True, how="left")
    wins = st.win_rate_matrix(f)
    pareto = st.pareto_front(wins, threshold)
    wil = [st.wilcoxon_against(f, "Random")] if "Random" in set(f["config"]) else []
    only = f[f["kind"] == "filter"]
    for (m, g), sub in only.groupby(["method", "group"]):  # rank/vote against mean of the same method x group
        if "mean" in set(sub["agg"]):
            wil.append(st.wilcoxon_against(sub, f"{m}|{g}|mean"))
    wilcoxon = pd.concat(wil, ignore_index=True) if wil else pd.DataFrame()
    # Table 3: rank of each group within (method, aggregation) by mean rank over (task, seed)
    lr = []
    for (m, a), sub in only.groupby(["method", "agg"]):
        r = st.mean_rank(sub.assign(config=sub["group"]))
        r["layer_rank"] = np.arange(1, len(r) + 1)
        lr.append(r.assign(method=m, agg=a))
    layer_ranks = pd.concat(lr, ignore_index=True) if lr else pd.DataFrame()
    # Table 2: Spearman over (task, group, seed) of C / NDR / NDR-AUC with the post-filter accuracy
    groups_c = canc[canc["level"] == "group"][["task", "name", "median", "layer_C"]].rename(
        columns={"name": "group", "median": "C_median"})
    joined = only.merge(ndr, on=["task", "method", "group", "agg"], how="left").merge(groups_c, on=["task", "group"], how="left")
    corr = []
    for (m, a), sub in joined.groupby(["method", "agg"]):
        row = {"method": m, "agg": a}
        for metric in ("layer_C", "C_median", "ndr", "ndr_auc"):
            rho, p, n = st.spearman(sub[metric], sub["accuracy"])
            row.update({f"rho_{metric}": rho, f"p_{metric}": p})
        row["n"] = n
        corr.append(row)
    return {"runs": f, "ranking": ranking, "winrate": wins.rename_axis("config").reset_index(), "pareto": pareto,
            "wilcoxon": wilcoxon, "layer_ranks": layer_ranks, "correlation": pd.DataFrame(corr)}


def selection_table(runs: pd.DataFrame) -> pd.DataFrame:
    """RRInf Table 3 layout: rows = method (group/agg), columns = task x keep fraction, mean ± std accuracy."""
    s = runs[runs["kind"].isin(["select", "select_random"])].copy()
    if s.empty:
        return pd.DataFrame()
    s["row"] = s.apply(lambda r: "Random" if r["kind"] == "select_random" else f"{r['method']}|{r['group']}|{r['agg']}", axis=1)
    s["col"] = s["task"] + " keep " + (100 * s["fraction"]).round().astype(int).astype(str) + "%"
    return s.groupby(["row", "col"])[ACC].apply(_mean_std).unstack("col").rename_axis("method").reset_index()


def logo_table(runs: pd.DataFrame, scores: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """HyperINF Table 6: Spearman of a group's mean score with the validation-loss change its removal causes
    (change = best val loss without the group - best val loss of the unfiltered retraining, same seed).
    With positive = harmful, a good method gives a negative rho (removing harmful groups lowers the loss)."""
    lg = runs[runs["kind"] == "logo"]
    full = runs[runs["kind"] == "full"].set_index(["task", "seed"])["best_val_loss"]
    rows = []
    for (task, m, g, a), sub in lg.groupby(["task", "method", "group", "agg"]):
        table = scores[(task, m)]
        order = np.argsort(-table[f"{g}|{a}"].to_numpy(), kind="stable")
        parts = np.array_split(order, int(sub["groups"].iloc[0]))
        means = [float(table[f"{g}|{a}"].to_numpy()[idx].mean()) for idx in parts]
        x = [means[int(i)] for i in sub["index"]]
        y = [r["best_val_loss"] - full.get((task, r["seed"]), np.nan) for _, r in sub.iterrows()]
        rho, p, n = st.spearman(x, y)
        rows.append({"task": task, "method": m, "group": g, "agg": a, "spearman": rho, "p_value": p, "n": n,
                     "mean_val_loss_change": float(np.nanmean(y))})
    return pd.DataFrame(rows)


def stage_tables(inputs: dict, out: dict, params: dict) -> None:
    """inputs runs, ndr, cancellation, scores (expand order: tasks x methods); params tasks, methods, layers
    -> one output per table."""
    from inflbench.artifacts import as_plain

    keys = [f"{t}|{m}" for t in params["tasks"] for m in params["methods"]]  # expand() order
    score_paths = dict(zip(keys, inputs["scores"]))
    run_paths, ndr_paths, canc_paths = inputs["runs"], inputs["ndr"], inputs["cancellation"]
    threshold = params["layers"]["pareto_threshold"]
    provenance = {"layers": as_plain(params)["layers"]}
    runs = load_runs(run_paths)
    ndr = pd.concat([pd.read_csv(p) for p in ndr_paths], ignore_index=True)
    canc = pd.concat([pd.read_csv(p) for p in canc_paths], ignore_index=True)
    tables = filter_tables(runs, ndr, canc, threshold)
    tables["selection"] = selection_table(runs)
    scores = {tuple(k.split("|")): pd.read_csv(v) for k, v in score_paths.items()}
    tables["logo"] = logo_table(runs, scores)
    tables["cancellation"] = canc
    tables["ndr"] = ndr
    for name, path in out.items():
        if name.endswith("_html"):  # rendered from the CSV by jobs.run
            continue
        frame = tables[name]
        if frame.empty:  # keep every table readable (and the report renderable) when a study is off
            frame = pd.DataFrame({"note": [f"no {name} results in this configuration"]})
        write_table(frame, path, provenance)


def replicate_summary(runs: pd.DataFrame, ndr: pd.DataFrame) -> pd.DataFrame:
    """One replicate's filter results, one row per (task, configuration): the test accuracy averaged over the
    replicate's retrain seeds, and the NDR / NDR-AUC of the configuration's scores (empty for the baselines
    Random, Full (oracle) and No filter). The configuration is in column ``method`` as in the other seed tables."""
    acc = (runs.groupby(["task", "config"], sort=False)["accuracy"].agg(["mean", "size"])
           .rename(columns={"mean": "accuracy", "size": "retrainings"}).reset_index())
    nd = ndr.assign(config=ndr["method"] + "|" + ndr["group"] + "|" + ndr["agg"])[["task", "config", "ndr", "ndr_auc"]]
    return acc.merge(nd, on=["task", "config"], how="left").rename(columns={"config": "method"})


def stage_seeds(inputs: dict, outputs: dict, params: dict) -> dict[str, pd.DataFrame]:
    """inputs runs, ndr (the ``runs`` and ``ndr`` tables of each replicate seed of params seeds) -> the tables
    over seeds of the post-filter accuracy, NDR and NDR-AUC per configuration, paired tests on the accuracy."""
    from inflbench.replicates import write_seeds_tables

    tables = {s: replicate_summary(pd.read_csv(r), pd.read_csv(n))
              for s, r, n in zip(params["seeds"], inputs["runs"], inputs["ndr"])}
    return write_seeds_tables(tables, outputs, params)


# ---------------------------------------------------------------- figures
_plt = pyplot


def _save(fig, out: str) -> None:
    fig.tight_layout()
    save(fig, out)


def figure_accuracy(runs_csv: str, out: str) -> None:
    """Seed 003 Fig. 2: best test accuracy after filtering per method x group (one box per aggregation)."""
    plt = _plt()
    runs = pd.read_csv(runs_csv)
    f = runs[runs["kind"] == "filter"]
    base = runs[runs["kind"].isin(["random", "oracle", "full"])]
    labels = sorted(f.groupby(["method", "group", "agg"]).groups) if len(f) else []
    data = [f[(f["method"] == m) & (f["group"] == g) & (f["agg"] == a)][ACC] * 100 for m, g, a in labels]
    names = [method_label(f"{m}|{g}|{a}") for m, g, a in labels]
    for kind, sub in base.groupby("kind"):
        data.append(sub[ACC] * 100)
        names.append(kind)
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(names) + 2), 4))
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=60, ha="right")
    ax.set(ylabel="best test accuracy (%)", title="Accuracy after filtering (all tasks and seeds)")
    fig.text(0.5, -0.02, BOX_MARKS, ha="center", fontsize=8)
    _save(fig, out)


def figure_ndr_blocks(block_paths: list[str], out: str) -> None:
    """Seed 003 Figs. 4, 13-16: NDR@p per module (rows) and layer (columns), one panel per task x method."""
    plt = _plt()
    frames = pd.concat([pd.read_csv(p) for p in block_paths], ignore_index=True)
    panels = list(frames.groupby(["task", "method"]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.2 * len(panels) + 0.5), squeeze=False)
    for ax, ((task, method), sub) in zip(axes[:, 0], panels):
        lay = sub[sub["layer"].notna()].pivot_table(index="module", columns="layer", values="ndr")
        im = ax.imshow(100 * lay.to_numpy(), aspect="auto", vmin=0, vmax=100, cmap="viridis")
        ax.set_yticks(range(len(lay.index)), lay.index)
        ax.set_xticks(range(len(lay.columns)), [int(c) for c in lay.columns])
        ax.grid(False)
        other = sub[sub["layer"].isna()]
        extra = ", ".join(f"{r.block}: {100 * r.ndr:.0f}%" for r in other.itertuples())
        ax.set_title(f"{task} / {method_label(method)}  ({extra})", fontsize=10)
        fig.colorbar(im, ax=ax, label="NDR (%)")
    axes[-1, 0].set_xlabel("layer")
    _save(fig, out)


def figure_aggregation_change(runs_csv: str, out: str) -> None:
    """Seed 003 Fig. 3: % change of mean best test accuracy of rank / vote relative to mean, per method x group."""
    plt = _plt()
    runs = pd.read_csv(runs_csv)
    f = runs[runs["kind"] == "filter"]
    acc = f.groupby(["method", "group", "agg"])[ACC].mean().unstack("agg")
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(acc) + 2), 4))
    others = [a for a in ("rank", "vote") if a in acc] if "mean" in acc else []
    width = 0.8 / max(len(others), 1)
    for i, a in enumerate(others):
        ax.bar(np.arange(len(acc)) + i * width, 100 * (acc[a] / acc["mean"] - 1), width, label=a)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(np.arange(len(acc)), [method_label(f"{m}|{g}") for m, g in acc.index], rotation=60, ha="right")
    shown = " / ".join(a.capitalize() for a in others) or "Rank / Vote"  # name only what is plotted
    ax.set(ylabel="accuracy change vs mean (%)", title=f"{shown} relative to mean aggregation")
    if others:
        ax.legend()
    _save(fig, out)


def figure_deciles(decile_paths: list[str], out: str) -> None:
    """Seed 003 Fig. 19: flipped samples per influence decile (1 = most harmful), one line per group x agg."""
    plt = _plt()
    frames = pd.concat([pd.read_csv(p) for p in decile_paths], ignore_index=True)
    panels = list(frames.groupby(["task", "method"]))
    cols = min(3, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, ((task, method), sub) in zip(axes.flat, panels):
        for (g, a), s in sub.groupby(["group", "agg"]):
            ax.plot(s["decile"], 100 * s["share_of_flipped"], marker="o", ms=3, label=f"{g}|{a}")
        ax.axhline(10, color="grey", ls=":", lw=0.8)
        ax.set(title=f"{task} / {method_label(method)}", xlabel="influence decile (1 = most harmful)",
               ylabel="% of flipped")
        ax.legend(fontsize=8, loc="upper right")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    _save(fig, out)


def stage_figures(inputs: dict, outputs: dict, params: dict) -> None:
    """inputs runs (table), blocks, deciles -> outputs accuracy, ndr_blocks, aggregation_change, noise_deciles."""
    figure_accuracy(inputs["runs"], outputs["accuracy"])
    figure_ndr_blocks(list(inputs["blocks"]), outputs["ndr_blocks"])
    figure_aggregation_change(inputs["runs"], outputs["aggregation_change"])
    figure_deciles(list(inputs["deciles"]), outputs["noise_deciles"])
