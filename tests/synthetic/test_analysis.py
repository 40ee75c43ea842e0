"""Classification, paper-layout tables and the generated summary are derived from the numbers."""
import math

import numpy as np
import pandas as pd
import pytest

from inflbench.studies.synthetic import analysis, summary
from inflbench.studies.synthetic.config import validate_config
from inflbench.studies.synthetic.runner import COLUMNS

CFG = validate_config({"dims": [64, 128], "n_samples": [20, 400], "distributions": ["normal_0_1"], "seeds": [0, 1],
                       "iterations": 10, "table": {"iteration": 5},
                       "solvers": ["schulz_paper", "lissa", "datainf", "sor_1.5", "sor_eq26_1.5", "cg", "inverse"]})
REF_NORM = 10.0


def _curves(cell: dict) -> dict:
    """Error curves (relative) of one cell; ``cell`` = distribution, d, N, seed."""
    it = np.arange(1, 11)
    big_n = cell["N"] > cell["d"]
    return {
        "schulz_paper": 0.5 ** (it * 3.0),  # converges
        "lissa": 0.3 * 10.0 ** it if not big_n else 0.5 ** (it * 2.0),  # explodes unless N > d
        "sor_1.5": 0.9 ** it,  # slow, never diverges
        "sor_eq26_1.5": np.where(it > 6, np.inf, 10.0 ** it),  # diverges to inf
        "cg": 0.2 ** it,
        "datainf": np.array([0.5 * cell["d"] / 64]),  # closed form, grows with d
        "inverse": np.array([1e-7]),
    }


def _frames(break_schulz_at=None):
    rows, cells = [], []
    for d in CFG["dims"]:
        for n in CFG["n_samples"]:
            for seed in CFG["seeds"]:
                cell = {"distribution": "normal_0_1", "d": d, "N": n, "seed": seed}
                cells.append({**cell, "lambda_min": 0.01, "lambda_max": 3.0 if n < d else 1.5, "condition": 300.0,
                              "ref_norm": REF_NORM})
                for solver, rel in _curves(cell).items():
                    if solver == "schulz_paper" and break_schulz_at == (d, n):
                        rel = np.full_like(rel, 0.5)
                    its = [0] if solver in ("datainf", "inverse") else range(1, 11)
                    for k, r in zip(its, rel):
                        fro = r * 3 if solver in ("schulz_paper", "inverse") else math.nan
                        rows.append({**cell, "solver": solver, "iteration": k, "error": r * REF_NORM,
                                     "seconds": 0.01 * (k or 1) * (5 if solver == "schulz_paper" else 1),
                                     "fro_error": fro, "rel_error": r})
    return pd.DataFrame(rows)[COLUMNS], pd.DataFrame(cells)


def test_classify_statuses():
    conv, _cells = _frames()
    runs = analysis.classify(conv, 1e-3)
    status = runs.groupby("solver")["status"].agg(lambda s: set(s))
    assert status["schulz_paper"] == {"converged"}
    assert status["sor_eq26_1.5"] == {"diverged"}
    assert status["sor_1.5"] == {"stalled"}
    assert status["lissa"] == {"diverged", "converged"}
    assert status["datainf"] == {"inaccurate"} and status["inverse"] == {"accurate"}
    schulz = runs[runs.solver == "schulz_paper"].iloc[0]
    assert schulz["iter_to_rtol"] == 4  # 0.5**12 < 1e-3 first at iteration 4


def _by_id(conv, cells):
    return {c["id"]: c for c in summary.claims(conv, cells, CFG)}


def test_claims_agree_when_numbers_match_the_paper():
    claims = _by_id(*_frames())
    assert claims["schulz_paper_converges"]["verdict"] == "agree"
    assert "8/8 runs" in claims["schulz_paper_converges"]["ours"]
    assert claims["lissa_diverges"]["verdict"] == "agree"  # diverges except where N > d
    assert claims["sor_textbook"]["verdict"] == "disagree"  # never diverges
    assert claims["sor_literal_eq26"]["verdict"] in {"partly", "agree"}
    assert claims["datainf_inaccurate"]["verdict"] == "agree"
    assert "grows with d in 4/4" in claims["datainf_inaccurate"]["ours"]
    assert claims["schulz_fastest"]["verdict"] == "disagree"  # our fake Schulz is 5x slower than the others
    assert claims["schulz_matches_inverse"]["verdict"] == "disagree"


def test_claims_follow_the_numbers():
    claims = _by_id(*_frames(break_schulz_at=(128, 20)))
    c = claims["schulz_paper_converges"]
    assert c["verdict"] == "partly" and "6/8 runs" in c["ours"] and "d=128 N=20" in c["ours"]


def test_table_layouts():
    conv, _cells = _frames()
    long = analysis.table_long(conv, CFG)
    assert set(long["d"]) == {64, 128} and set(long["N"]) == {400} and set(long["iteration"]) == {5}
    s = long[(long.solver == "schulz_paper") & (long.metric == "seconds") & (long.d == 64)].iloc[0]
    assert s["mean"] == pytest.approx(0.25) and s["runs"] == 2
    timing = analysis.timing_table(long, CFG)
    assert "| Matrix dim | CG | FGE (torch inverse) | Schulz (X0=c*I) |" in timing
    layout = timing.split("### Time cost (s) — all solvers")[0]
    assert layout.count("\n| 64 |") == 1 and layout.count("\n| 128 |") == 1
    assert "| 64 | Schulz | 0.0008 | 0.25 |" in timing  # side by side with the paper (d = 64 is in both grids)
    error = analysis.error_table(long, CFG)
    assert "Table 9 layout" in error and "‖M⁻¹ − X‖_F" in error


def test_summary_markdown_mentions_every_claim():
    conv, cells = _frames()
    text = summary.summary_markdown(conv, cells, CFG)
    for claim in summary.claims(conv, cells, CFG):
        assert f"| {claim['id']} |" in text
    assert "## Run status per solver" in text and "diverged" in text


def test_collect_roundtrip(tmp_path):
    conv, _cells = _frames()
    csvs, metas = [], []
    for i, (key, g) in enumerate(conv.groupby(["d", "N", "seed"])):
        csvs.append(tmp_path / f"{i}.csv")
        metas.append(tmp_path / f"{i}.json")
        g.to_csv(csvs[-1], index=False)
        metas[-1].write_text('{"distribution": "normal_0_1", "d": %d, "N": %d, "seed": %d, "lambda_max": 2.0, '
                             '"solvers": {"cg": {"wall_seconds": 0.1, "note": "x"}}}' % key)
    got, cells = analysis.collect([str(p) for p in csvs], [str(p) for p in metas])
    assert len(got) == len(conv) and list(got.columns) == COLUMNS
    assert "cg:wall_seconds" in cells and "cg:note" not in cells and len(cells) == 8


def test_grid_cost_sums_cells_and_scales_with_cores():
    conv, cells = _frames()
    cells["threads"] = 1
    cells["cell_cpu_seconds"] = cells["d"] * 0.5 + cells["seed"]  # 32 / 33 s (d=64), 64 / 65 s (d=128)
    cells["cell_wall_seconds"] = cells["cell_cpu_seconds"] * 2
    cost = summary.grid_cost(cells)
    assert cost.loc[(128, 20), "cpu_mean"] == 64.5 and cost.loc[(64, 400), "cpu_sum"] == 65.0
    assert cost["cells"].sum() == len(cells) == 8
    text = summary.summary_markdown(conv, cells, CFG)
    total = 2 * (32 + 33) + 2 * (64 + 65)  # 388 s; largest cell 65 s
    assert f"Total CPU time of the cells: {total} s" in text
    assert "2 cores ≈ 3 min" in text and "8 cores ≈ 1 min" in text  # max(388/2, 65) = 194 s; max(48.5, 65)
    assert "## Cost" not in summary.summary_markdown(conv, cells.drop(columns="cell_cpu_seconds"), CFG)
