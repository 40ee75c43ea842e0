"""The docs/methods.md table of a ``bench_methods.py`` CSV: one line per configuration, settings P and Q side by side.

    python benchmarks/methods_table.py benchmarks/results/methods.csv
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HEADER = ("| config | P wall (s) | P roofline | P paired | P cap | P kernels × share | Q wall (s) | Q roofline | "
          "Q paired | Q roofline, shape | Q cap | Q kernels × share | Q Spearman vs exact_block | "
          "Q rel. error vs exact_block |")


def _f(row: dict | None, key: str, fmt: str) -> str:
    if row is None or row.get(key) in (None, ""):
        return ""
    return format(float(row[key]), fmt)


def _split(row: dict | None) -> str:
    k, s = _f(row, "roofline_kernels", ".2f"), _f(row, "kernel_share", ".2f")
    return f"{k} × {s}" if k and s else ""


def table(rows: list[dict]) -> str:
    by = {(r["config"], r["setting"]): r for r in rows}
    configs = list(dict.fromkeys(r["config"] for r in rows))
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for c in configs:
        if (c, "P,Q") in by:  # computed once for both settings
            r = by[(c, "P,Q")]
            lines.append(f"| {c} (once per store) | {_f(r, 'wall_s', '.3g')} | {_f(r, 'roofline', '.2f')} | "
                         f"{_f(r, 'roofline_paired', '.2f')} | {_f(r, 'roofline_cap', '.2f')} |" + " |" * 9)
            continue
        p, q = by.get((c, "P")), by.get((c, "Q"))
        lines.append(" | ".join([
            f"| {c}", _f(p, "wall_s", ".3g"), _f(p, "roofline", ".2f"), _f(p, "roofline_paired", ".2f"),
            _f(p, "roofline_cap", ".2f"), _split(p), _f(q, "wall_s", ".3g"), _f(q, "roofline", ".2f"),
            _f(q, "roofline_paired", ".2f"), _f(q, "roofline_shape", ".2f"),
            _f(q, "roofline_cap", ".2f"), _split(q), _f(q, "spearman_vs_exact_block", ".4f"),
            _f(q, "rel_err_vs_exact_block", ".1e"),
        ]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: methods_table.py METHODS_CSV", file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.is_file():
        print(f"methods_table: {path}: no such file", file=sys.stderr)
        return 1
    with open(path, newline="") as f:
        print(table(list(csv.DictReader(f))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
