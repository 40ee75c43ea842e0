"""HTML renderings of result tables (CSV) and generated summaries (markdown) for ``snakemake --report``:
numbers rounded, columns sortable by clicking their header, an optional caption saying how to read it."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import pandas as pd

STYLE = """<style>
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;margin:12px;color:#222}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#eef2f7;cursor:pointer;white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafafa}caption{caption-side:top;text-align:left;color:#555;padding:4px 0}
td.text{max-width:520px}</style>"""
SORT_JS = """<script>
document.querySelectorAll('table.sortable th').forEach(function(th,i){th.title='click to sort';
th.addEventListener('click',function(){var tb=th.closest('table').tBodies[0],rows=[].slice.call(tb.rows),
asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';rows.sort(function(a,b){var x=a.cells[i].dataset.v,
y=b.cells[i].dataset.v,nx=parseFloat(x),ny=parseFloat(y);var c=(isNaN(nx)||isNaN(ny))?x.localeCompare(y):nx-ny;
return asc?c:-c});rows.forEach(function(r){tb.appendChild(r)})})});</script>"""


def format_value(value, digits: int = 3) -> str:
    """Rounded text of one cell: floats to ``digits`` decimals (scientific when tiny or huge), '' for NaN."""
    if isinstance(value, (bool,)) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float) or hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "f":
        value = float(value)
        if math.isnan(value):
            return ""
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}f}"
    return str(value)


def _cell(value) -> str:
    text = format_value(value)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    sort_key = html.escape(str(value) if number else text, quote=True)
    klass = "num" if number else ("text" if len(text) > 40 else "")
    return f'<td class="{klass}" data-v="{sort_key}">{html.escape(text)}</td>'


def table_html(frame: pd.DataFrame, caption: str = "") -> str:
    """One sortable ``<table>`` of ``frame`` (values rounded)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>"
                     for row in frame.astype(object).itertuples(index=False))
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="sortable">{cap}<thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>'


def page(body: str, title: str = "") -> str:
    heading = f"<h3>{html.escape(title)}</h3>" if title else ""
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{STYLE}'
            f"</head><body>{heading}{body}{SORT_JS}</body></html>\n")


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _pipe_cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_html(text: str) -> str:
    """The markdown our studies generate (headings, pipe tables, bullets, paragraphs) as HTML."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            header, body = _pipe_cells(block[0]), [b for b in block[1:] if not re.fullmatch(r"[\s|:\-]+", b)]
            head = "".join(f"<th>{_inline(c)}</th>" for c in header)
            rows = "".join("<tr>" + "".join(f'<td data-v="{html.escape(c)}">{_inline(c)}</td>'
                                            for c in _pipe_cells(b)) + "</tr>" for b in body)
            out.append(f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>')
            continue
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        if heading:
            level = min(len(heading.group(1)) + 2, 6)
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.lstrip().startswith(("- ", "* ")):
            out.append(f"<li>{_inline(line.lstrip()[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def render(source: str | Path, target: str | Path, title: str = "", caption: str = "") -> None:
    """``source`` (``.csv`` or ``.md``) as an HTML page at ``target``."""
    source = Path(source)
    if source.suffix == ".md":
        body = markdown_html(source.read_text())
    else:
        body = table_html(pd.read_csv(source), caption)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text(page(body, title or source.stem.replace("_", " ")))
