"""The ``inflbench`` command: look at a finished run.

    inflbench summary results/<run>                         headline tables of a finished run
    inflbench top-k --run results/<run> --task T --method M [-k 10] [--kind harmful|helpful|both]

Experiments run with Snakemake (``snakemake --cores 2``; ablation grids: ``snakemake grid``); this command
only reads their results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from inflbench.errors import InputError
from inflbench.paths import Layout

TEXT_WIDTH = 70


def layout_of(run: str | Path) -> Layout:
    run = Path(run)
    if not run.is_dir():
        raise InputError(f"{run}: no such run folder (expected results/<run>)")
    return Layout(run.parent, run.name)


def _existing(root: Path, pattern: str) -> list[str]:
    return sorted({p.name for p in root.glob(pattern)})


def show(frame: pd.DataFrame, digits: int = 3) -> str:
    frame = frame.copy()
    for col in [c for c in frame if not pd.api.types.is_numeric_dtype(frame[c])]:
        frame[col] = frame[col].astype(str).map(lambda t: t if len(t) <= TEXT_WIDTH else t[:TEXT_WIDTH - 1] + "…")
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.float_format",
                           lambda v: f"{v:.{digits}f}"):
        return frame.to_string(index=False)


def top_k(run: str | Path, task: str, method: str, k: int = 10, kind: str = "both") -> pd.DataFrame:
    """The flagged training examples of ``method`` on ``task`` in a finished run."""
    from inflbench.topk import topk_table

    layout = layout_of(run)
    scores, train = Path(layout.scores(task=task, method=method)), Path(layout.split(task=task, split="train"))
    if not train.is_file():
        tasks = [p.parent.parent.name for p in layout.root.glob("*/data/train.csv")]
        raise InputError(f"{train}: no training split of task {task!r} (tasks of this run: {sorted(tasks)})")
    if not scores.is_file():
        methods = [p.stem for p in scores.parent.glob("*.safetensors")]
        raise InputError(f"{scores}: method {method!r} has no scores for {task!r} (scored: {sorted(methods)})")
    frame = topk_table(scores, train, k)
    return frame if kind == "both" else frame[frame["kind"] == kind]


def summary(run: str | Path) -> str:
    """Headline tables of a finished run (leaderboard, detection, identification, synthetic claims)."""
    from inflbench.studies.detection.stages import leaderboard

    layout = layout_of(run)
    parts = []
    detection = Path(layout.detection_table())
    if detection.is_file():
        table = pd.read_csv(detection)
        parts.append("Leaderboard (mislabeled-data detection; rank 1 = best AUC, averaged over tasks)\n"
                     + show(leaderboard(table)))
        cols = [c for c in ("task", "method", "auc", "detection_at_20pct", "seconds", "peak_rss_mb") if c in table]
        parts.append("Detection per task and method\n" + show(table[cols]))
    identification = Path(layout.identification_table())
    if identification.is_file():
        table = pd.read_csv(identification)
        cols = [c for c in ("task", "method", "auc", "auc_std", "recall", "seconds") if c in table]
        parts.append("Influential-data identification\n" + show(table[cols]))
    claims = Path(layout.synthetic_summary())
    if claims.is_file():
        rows = [line for line in claims.read_text().splitlines() if line.startswith("| ") and "**" in line]
        parts.append("Synthetic inverse-HVP study (claim | source | verdict)\n" + "\n".join(rows))
    layer_tables = _existing(layout.root / "tables", "layers_*.csv")
    if layer_tables:
        parts.append(f"Layer study: {len(layer_tables)} tables in {layout.root / 'tables'}")
    if not parts:
        raise InputError(f"{layout.root}: no result tables yet (has the workflow finished?)")
    report = layout.root / "report.html"
    parts.append(f"Report: {report}" if report.is_file() else
                 f"Report: snakemake --report {report}")
    tasks = [p.parent.parent.name for p in layout.root.glob("*/scores/*.safetensors")]
    if tasks:
        parts.append(f"Flagged examples: inflbench top-k --run {layout.root} --task {sorted(tasks)[0]} "
                     "--method <method>")
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="inflbench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_sum = sub.add_parser("summary", help="headline tables of a finished run")
    p_sum.add_argument("run", help="results/<run>")
    p_top = sub.add_parser("top-k", help="most harmful / helpful training examples of one method")
    p_top.add_argument("--run", required=True, help="results/<run>")
    p_top.add_argument("--task", required=True)
    p_top.add_argument("--method", required=True)
    p_top.add_argument("-k", type=int, default=10)
    p_top.add_argument("--kind", choices=("both", "harmful", "helpful"), default="both")
    p_top.add_argument("--csv", action="store_true", help="print CSV (full text) instead of a table")
    args = parser.parse_args(argv)
    try:
        if args.command == "summary":
            print(summary(args.run))
        else:
            frame = top_k(args.run, args.task, args.method, args.k, args.kind)
            print(frame.to_csv(index=False) if args.csv else show(frame, digits=4))
    except InputError as exc:
        sys.exit(f"inflbench: invalid input: {exc}")


if __name__ == "__main__":
    main()
