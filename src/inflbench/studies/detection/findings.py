"""The measured tables of docs/results.md, regenerated from finished multi-seed detection runs.

* ``seed_rows`` -- per (seed, task, method): the detection summary (AUC, detection rate at 20 / 40 %, seconds)
  plus the Spearman correlation of the method's per-sample scores with references (``exact_block``,
  ``exact_joint``, ``tracin``) on the same seed, and the damping of the score file;
* ``method_table`` / ``damping_table`` -- Markdown over seeds: mean ± std and the t-based 95 % CI, the papers'
  numbers beside ours where the papers report the same task (``PAPER``);
* ``fill`` -- replaces the blocks ``<!-- BEGIN name -->`` ... ``<!-- END name -->`` of a Markdown file.

    python -m inflbench.studies.detection.findings docs/results.md default=results/results-default \\
        glue=results/results-glue
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from inflbench.artifacts import read_scores_meta, train_sample_scores
from inflbench.replicates import t_interval

REFERENCES = ("exact_block", "exact_joint", "tracin")
METRICS = ("auc", "seconds")
#: our column -> the detection table's column: share of the flipped labels found among the top 20 / 40 % most
#: harmful samples, HyperINF's detection rate rt(p) (its Table 2 at 40 % exceeds 50 %, so a recall)
RECALL_AT = {"recall_at_20pct": "detection_at_20pct", "recall_at_40pct": "detection_at_40pct"}

#: Papers' detection numbers (%, mean ± std over their seeds) for the tasks measured here, by our row:
#: RRInf Table 1 (AUC; RoBERTa-large, LoRA r=4, 4500/500) and HyperINF Table 2 (detection rate at 20 / 40 %
#: inspected; RoBERTa-large, rsLoRA r=16). Their LiSSA is the DataInf code's (our lissa_published), RRInf runs
#: at its Table 5 settings (rrinf_paper) and HyperINF as released (hyperinf_published).
PAPER = {
    ("SST-2", "tracin"): {"rrinf_auc": (45.60, 5.59), "hyperinf_20": (66.51, 7.88), "hyperinf_40": (71.96, 8.25)},
    ("SST-2", "datainf"): {"rrinf_auc": (83.62, 8.15), "hyperinf_20": (74.96, 4.33), "hyperinf_40": (80.50, 4.17)},
    ("SST-2", "lissa_published"): {"rrinf_auc": (45.38, 5.52), "hyperinf_20": (44.93, 1.67),
                                   "hyperinf_40": (46.62, 3.04)},
    ("SST-2", "rrinf_paper"): {"rrinf_auc": (88.52, 4.64)},
    ("SST-2", "hyperinf_published"): {"hyperinf_20": (69.00, 1.18), "hyperinf_40": (78.44, 1.17)},
    ("MRPC", "tracin"): {"rrinf_auc": (67.60, 0.98), "hyperinf_20": (57.75, 0.86), "hyperinf_40": (67.34, 0.47)},
    ("MRPC", "datainf"): {"rrinf_auc": (70.02, 2.61), "hyperinf_20": (58.52, 0.29), "hyperinf_40": (68.89, 1.74)},
    ("MRPC", "lissa_published"): {"rrinf_auc": (67.57, 0.96), "hyperinf_20": (24.46, 1.24),
                                  "hyperinf_40": (37.88, 2.57)},
    ("MRPC", "rrinf_paper"): {"rrinf_auc": (75.67, 0.74)},
    ("MRPC", "hyperinf_published"): {"hyperinf_20": (60.89, 0.34), "hyperinf_40": (79.17, 0.52)},
}
#: paper column -> (heading, our metric it compares with)
PAPER_COLUMNS = {"rrinf_auc": ("RRInf T1 AUC", "auc"), "hyperinf_20": ("HyperINF T2 @20 %", "recall_at_20pct"),
                 "hyperinf_40": ("HyperINF T2 @40 %", "recall_at_40pct")}


def seed_dirs(run_dir: str | Path) -> dict[int, Path]:
    """seed -> ``<run>/seed<N>`` of a multi-seed run."""
    dirs = {int(d.name[4:]): d for d in Path(run_dir).glob("seed*") if d.name[4:].isdigit() and d.is_dir()}
    if not dirs:
        raise FileNotFoundError(f"{run_dir}: no seed<N>/ folders (run with seeds: [..])")
    return dict(sorted(dirs.items()))


def seed_rows(run_dir: str | Path, references=REFERENCES) -> pd.DataFrame:
    """Per (seed, task, method): AUC, seconds and the recall of the flipped labels among the top 20 / 40 %
    (``RECALL_AT``) of the detection table, ``rho_<ref>`` (Spearman of the per-sample
    scores with each reference method present), ``damping_min`` / ``damping_max`` of the score file and the
    entry's base method, damping parameter and ``damping_scale``."""
    from scipy.stats import spearmanr

    rows = []
    for seed, root in seed_dirs(run_dir).items():
        path = root / "tables" / "detection.csv"
        table = pd.read_csv(path)
        missing = [c for c in RECALL_AT.values() if c not in table]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)} (rebuild the detection table)")
        for task, part in table.groupby("task", sort=False):
            scores = {m: train_sample_scores(root / task / "scores" / f"{m}.safetensors") for m in part["method"]}
            for rec in part.to_dict("records"):
                meta = read_scores_meta(root / task / "scores" / f"{rec['method']}.safetensors")
                row = {"seed": seed, **{k: rec.get(k, math.nan) for k in ("task", "method", *METRICS)},
                       **{k: rec[c] for k, c in RECALL_AT.items()},
                       "damping_min": meta.get("meta.damping_min", meta.get("meta.damping", math.nan)),
                       "damping_max": meta.get("meta.damping_max", meta.get("meta.damping", math.nan)),
                       "base_method": meta.get("meta.method", rec["method"]),
                       "damping_param": meta.get("meta.param.damping", "default"),
                       "damping_scale": float(meta.get("meta.param.damping_scale", 1.0))}
                for ref in references:
                    if ref in scores:
                        row[f"rho_{ref}"] = float(spearmanr(scores[rec["method"]], scores[ref]).statistic)
                rows.append(row)
    return pd.DataFrame(rows)


def _stat(values) -> tuple[float, float, float, float, int]:
    values = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    return (*t_interval(values), int(np.isfinite(values).sum()))


def _ms(values, pct: bool = False, ci: bool = False, digits: int = 3) -> str:
    """``mean ± std`` (``[low, high]`` with ci) of the finite values; ``n/a`` when there are none."""
    mean, std, low, high, n = _stat(values)
    if n == 0:
        return "n/a"
    k = 100.0 if pct else 1.0
    d = 1 if pct else digits
    text = f"{k * mean:.{d}f}" + (f" ± {k * std:.{d}f}" if n > 1 else "")
    return text + (f" [{k * low:.{d}f}, {k * high:.{d}f}]" if ci and n > 1 else "")


def _paper_cell(task: str, method: str, col: str, ours) -> str:
    """The paper's ``mean ± std`` and whether it lies inside our 95 % CI (``in CI``) or above / below it."""
    value = PAPER.get((task, method), {}).get(col)
    if value is None:
        return ""
    _, _, low, high, n = _stat(ours)
    where = ""
    if n > 1 and math.isfinite(low):
        p = value[0] / 100
        where = " (in CI)" if low <= p <= high else (" (above)" if p > high else " (below)")
    return f"{value[0]:.1f} ± {value[1]:.1f}{where}"


def method_table(rows: pd.DataFrame, task: str, methods=None, paper: bool = False) -> str:
    """Markdown, one row per method of ``task`` (best mean AUC first): seeds, AUC mean ± std [95 % CI],
    recall of the flips in the top 20 / 40 % (%), Spearman with each reference, seconds; with ``paper``, the papers' numbers."""
    part = rows[rows["task"] == task]
    if methods is not None:
        part = part[part["method"].isin(methods)]
    order = part.groupby("method", sort=False)["auc"].mean().sort_values(ascending=False).index
    refs = [c for c in part if c.startswith("rho_") and part[c].notna().any()]
    head = ["method", "seeds", "AUC mean ± std [95 % CI]", "found @20 % (%)", "found @40 % (%)"]
    head += [f"ρ {c[4:]}" for c in refs] + ["seconds"]
    paper_cols = [c for c in PAPER_COLUMNS if paper and any(c in PAPER.get((task, m), {}) for m in order)]
    head += [PAPER_COLUMNS[c][0] for c in paper_cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in order:
        g = part[part["method"] == method]
        cells = [f"`{method}`", str(g["seed"].nunique()), _ms(g["auc"], ci=True),
                 _ms(g["recall_at_20pct"], pct=True), _ms(g["recall_at_40pct"], pct=True)]
        cells += [_ms(g[c], digits=2) for c in refs] + [_ms(g["seconds"], digits=1)]
        cells += [_paper_cell(task, method, c, g[PAPER_COLUMNS[c][1]]) for c in paper_cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def damping_table(rows: pd.DataFrame, task: str, sweep: dict[str, float]) -> str:
    """Markdown of the damping sweep: per entry (method -> multiplier of the default lambda, ascending) the
    lambda range over blocks, AUC, and Spearman with exact_block (x1) and tracin; tracin closes the table."""
    part = rows[rows["task"] == task]
    lines = ["| λ × default | method | λ over blocks (seed mean) | AUC mean ± std [95 % CI] | ρ exact_block | ρ tracin |",
             "|---|---|---|---|---|---|"]
    for method, scale in sorted(sweep.items(), key=lambda kv: kv[1]) + [("tracin", math.inf)]:
        g = part[part["method"] == method]
        if g.empty:
            continue
        lam = (f"{g['damping_min'].mean():.2e} – {g['damping_max'].mean():.2e}"
               if g["damping_min"].notna().any() else "—")
        label = "∞ (TracIn)" if math.isinf(scale) else f"{scale:g}"
        lines.append(f"| {label} | `{method}` | {lam} | {_ms(g['auc'], ci=True)} | "
                     f"{_ms(g.get('rho_exact_block', []), digits=2)} | {_ms(g.get('rho_tracin', []), digits=2)} |")
    return "\n".join(lines)


def fill(text: str, blocks: dict[str, str]) -> str:
    """``text`` with the body of each ``<!-- BEGIN name -->`` ... ``<!-- END name -->`` replaced; a block
    name missing from ``text`` is an error."""
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- BEGIN {re.escape(name)} -->\n).*?(<!-- END {re.escape(name)} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"no block '<!-- BEGIN {name} -->' ... '<!-- END {name} -->' in the document")
        text = pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)
    return text


def damping_sweep(rows: pd.DataFrame) -> dict[str, float]:
    """method -> damping_scale of the exact_block entries on the default damping rule (exact_block: x1); empty
    when no entry scales it (no sweep in the run)."""
    part = rows[(rows["base_method"] == "exact_block") & (rows["damping_param"] == "default")]
    sweep = dict(zip(part["method"], part["damping_scale"]))
    return sweep if any(v != 1.0 for v in sweep.values()) else {}


def model_line(run_dir: str | Path, task: str) -> str:
    """One line: validation and test accuracy of the fine-tuned model at its selected epoch, over the seeds."""
    best = []
    for root in seed_dirs(run_dir).values():
        curve = pd.read_csv(root / task / "model" / "training_curve.csv")
        best.append(curve[curve["best"].astype(str) == "True"].iloc[-1])
    frame = pd.DataFrame(best)
    return (f"Fine-tuned model at its selected epoch (lowest validation loss), over {len(frame)} seeds: "
            f"validation accuracy {_ms(frame['val_accuracy'], pct=True)} %, test accuracy "
            f"{_ms(frame['test_accuracy'], pct=True)} % (trained on the noisy labels).\n\n")


def blocks_for(kind: str, run_dir: str | Path, rows: pd.DataFrame | None = None) -> dict[str, str]:
    """The document blocks of one run: ``<kind>-<task>`` per task (method table; with the papers' numbers for
    GLUE tasks) and, when the run has a damping sweep, ``<kind>-damping-<task>``."""
    rows = seed_rows(run_dir) if rows is None else rows
    sweep = damping_sweep(rows)
    swept = set(sweep) - {"exact_block"}
    out = {}
    for task in dict.fromkeys(rows["task"]):
        methods = [m for m in dict.fromkeys(rows["method"]) if m not in swept]
        out[f"{kind}-{task}"] = model_line(run_dir, task) + method_table(rows, task, methods,
                                                                          paper=any(t == task for t, _ in PAPER))
        if swept:
            out[f"{kind}-damping-{task}"] = damping_table(rows, task, sweep)
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Fill the measured tables of a Markdown file from finished runs.")
    parser.add_argument("doc", help="Markdown file with <!-- BEGIN <kind>-<task> --> ... <!-- END ... --> blocks")
    parser.add_argument("runs", nargs="+", help="kind=results/<run> (a run with seeds: [..])")
    parser.add_argument("--csv", help="also write the per-seed rows of every run here")
    args = parser.parse_args(argv)
    blocks, frames = {}, []
    for spec in args.runs:
        kind, _, path = spec.partition("=")
        if not path:
            sys.exit(f"inflbench: invalid input: run {spec!r}: give kind=path")
        try:
            rows = seed_rows(path)
        except ValueError as exc:
            sys.exit(f"inflbench: invalid input: {exc}")
        blocks.update(blocks_for(kind, path, rows))
        frames.append(rows.assign(run=kind))
    doc = Path(args.doc)
    try:
        doc.write_text(fill(doc.read_text(), blocks))
    except ValueError as exc:
        sys.exit(f"inflbench: invalid input: {args.doc}: {exc}")
    if args.csv:
        pd.concat(frames, ignore_index=True).to_csv(args.csv, index=False)
    print(f"{args.doc}: filled {', '.join(sorted(blocks))}")


if __name__ == "__main__":
    main()
