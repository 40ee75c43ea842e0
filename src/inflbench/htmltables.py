"""HTML renderings of result tables (CSV) and generated summaries (markdown) for ``snakemake --report``:
numbers rounded, columns sortable by clicking their header (no script element), an optional caption saying how to read it."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import pandas as pd

STYLE = """<style>
.ib{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;margin:12px;color:#222}
.ib table{border-collapse:collapse;margin:8px 0}.ib th,.ib td{border:1px solid #ccc;padding:3px 8px;text-align:left}
.ib th{background:#eef2f7;cursor:pointer;white-space:nowrap}.ib td.num{text-align:right;font-variant-numeric:tabular-nums}
.ib tr:nth-child(even) td{background:#fafafa}.ib caption{caption-side:top;text-align:left;color:#555;padding:4px 0}
.ib td.text{max-width:520px}.ib h3{font-size:16px;margin:4px 0}</style>"""
# click handler of every header: sort the rows by that column (numbers numerically), again to reverse; inline
# rather than a <script>, so the report can embed the table in its first page
SORT = ("var th=this,i=th.cellIndex,tb=th.closest('table').tBodies[0],r=[].slice.call(tb.rows),"
        "a=th.dataset.asc!=='1';th.dataset.asc=a?'1':'0';r.sort(function(p,q){var x=p.cells[i].dataset.v,"
        "y=q.cells[i].dataset.v,m=parseFloat(x),n=parseFloat(y),c=(isNaN(m)||isNaN(n))?x.localeCompare(y):m-n;"
        "return a?c:-c});r.forEach(function(e){tb.appendChild(e)})")


def _th(content: str) -> str:
    return f'<th title="click to sort" onclick="{SORT}">{content}</th>'


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
    head = "".join(_th(html.escape(str(c))) for c in frame.columns)
    rows = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>"
                     for row in frame.astype(object).itertuples(index=False))
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="sortable">{cap}<thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>'


def page(body: str, title: str = "") -> str:
    """A standalone page that is also a clean fragment (no html/head/body tags, styles scoped to ``.ib``),
    so the report's first page can embed it."""
    heading = f"<h3>{html.escape(title)}</h3>" if title else ""
    return f'<meta charset="utf-8">{STYLE}\n<div class="ib">{heading}{body}</div>\n'


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _pipe_cells(line: str) -> list[str]:
    """Cells of a markdown table row (``\\|`` is a literal bar)."""
    cells = re.split(r"(?<!\\)\|", line.strip().removeprefix("|").removesuffix("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


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
            head = "".join(_th(_inline(c)) for c in header)
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
    if not title:  # tables/x.csv -> "x"; <task>/topk/m.csv -> "<task> · topk · m"
        parts = source.resolve().parts
        title = source.stem if source.parent.name == "tables" else " · ".join(parts[-3:-1] + (source.stem,))
    Path(target).write_text(page(body, title.replace("_", " ")))
