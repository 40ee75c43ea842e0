"""Figures: one style, readable method names, a PDF beside every PNG."""

from __future__ import annotations

import pandas as pd

from inflbench.figures import METHOD_NAMES, method_label
from inflbench.methods import available
from inflbench.studies.detection.stages import stage_detection_figure


def test_method_labels_are_readable():
    assert method_label("exact_block") == "Exact (per block)"
    assert method_label("tracin|L3-5|vote") == "TracIn, layers 3–5, vote"
    assert method_label("datainf|L2|mean") == "DataInf, layer 2, mean"
    assert method_label("some_new_method|all") == "some new method, all"
    assert set(available()) <= set(METHOD_NAMES)  # every registered method has a figure name


def test_detection_figure_writes_png_and_pdf_with_readable_legend(tmp_path):
    curves = []
    for method in ("exact_block", "tracin"):
        path = tmp_path / f"{method}.csv"
        pd.DataFrame({"fraction_inspected": [0, 0.5, 1], "fraction_detected": [0, 0.7, 1]}).to_csv(path, index=False)
        curves.append(str(path))
    out = tmp_path / "fig" / "detection_t.png"
    import matplotlib.pyplot as plt

    seen = []
    original = plt.Figure.savefig

    def spy(fig, fname, *args, **kwargs):
        seen.append([t.get_text() for t in fig.axes[0].get_legend().get_texts()])
        return original(fig, fname, *args, **kwargs)

    plt.Figure.savefig = spy
    try:
        stage_detection_figure({"curves": curves}, {"figure": str(out)}, {"methods": ["exact_block", "tracin"],
                                                                          "task": "t"})
    finally:
        plt.Figure.savefig = original
    assert out.stat().st_size > 5_000 and out.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    assert seen[0] == ["Exact (per block)", "TracIn", "random"]
