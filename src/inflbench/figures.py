"""One look for every figure of every study: a shared matplotlib style, readable method names, and each
figure saved as PNG (for the report) with a PDF of the same name beside it (for papers)."""

from __future__ import annotations

import re
from pathlib import Path

STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 9, "legend.frameon": False, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "savefig.bbox": "tight", "figure.dpi": 100,
}
#: Registry name -> name in figures.
METHOD_NAMES = {
    "tracin": "TracIn", "tracin_we": "TracIn (word emb.)", "tracin_we_top10": "TracIn (word emb., top 10)",
    "cosine": "Gradient cosine", "datainf": "DataInf", "lissa": "LiSSA", "hyperinf": "HyperINF",
    "hyperinf_fim": "HyperINF (GFIM)", "rrinf": "RRInf", "exact_block": "Exact (per block)",
    "exact_joint": "Exact (joint)", "ekfac": "EK-FAC",
}


#: What the marks of ``boxplot(showmeans=True)`` are, for a figure note.
BOX_MARKS = "boxes: quartiles and median; triangle: mean; whiskers: 1.5 × IQR; circles: outliers"


def pyplot():
    """matplotlib.pyplot on the Agg backend with the shared style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def method_label(name: str) -> str:
    """``exact_block`` -> ``Exact (per block)``; ``tracin|L3-5|vote`` -> ``TracIn, layers 3-5, vote``."""
    head, *rest = str(name).split("|")
    words = [METHOD_NAMES.get(head, head.replace("_", " "))]
    for part in rest:
        layers = re.fullmatch(r"L(\d+)(?:-(\d+))?", part)
        words.append(f"layers {layers.group(1)}–{layers.group(2)}" if layers and layers.group(2)
                     else f"layer {layers.group(1)}" if layers else part.replace("_", " "))
    return ", ".join(words)


def save(fig, out: str | Path, dpi: int = 150) -> None:
    """``out`` (PNG) and the same figure as PDF beside it; closes the figure."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    fig.savefig(out.with_suffix(".pdf"))
    pyplot().close(fig)
