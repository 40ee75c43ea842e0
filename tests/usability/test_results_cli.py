"""Reading a finished run: top-k flagged examples, the leaderboard, the summary command, HTML tables."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from common import ROOT
from inflbench import cli, htmltables
from inflbench.artifacts import save_scores, write_table
from inflbench.jobs import render_html_outputs
from inflbench.paths import Layout
from inflbench.studies.detection.stages import leaderboard
from inflbench.topk import top_examples


def _train(n=6) -> pd.DataFrame:
    clean = np.array([0, 1] * (n // 2))
    label = clean.copy()
    label[[1, 4]] = 1 - label[[1, 4]]
    return pd.DataFrame({"id": np.arange(n), "text_a": [f"sentence {i}" for i in range(n)], "text_b": None,
                         "label": label, "clean_label": clean, "flipped": label != clean})


@pytest.fixture()
def run(tmp_path):
    """A finished run with one task, two methods (scores per block + total) and a detection table."""
    layout = Layout(tmp_path / "results", "demo")
    train = _train()
    write_table(train, layout.split(task="t1", split="train"), {})
    # (n_train, n_val) totals; row means: 0.1, 3.0, -2.0, 0.5, 2.0, -1.0 (flipped rows 1 and 4 rank first)
    means = np.array([0.1, 3.0, -2.0, 0.5, 2.0, -1.0])
    total = torch.tensor(np.stack([means - 1, means + 1], 1))
    save_scores(layout.scores(task="t1", method="tracin"), {"b": total / 2, "total": total}, {"seconds": 1.0})
    save_scores(layout.scores(task="t1", method="cosine"), {"total": -total}, {"seconds": 2.0})
    table = pd.DataFrame({"task": ["t1", "t1", "t2", "t2"], "method": ["tracin", "cosine", "tracin", "cosine"],
                          "auc": [0.9, 0.2, 0.6, 0.7], "detection_at_20pct": [1.0, 0.0, 0.5, 0.5],
                          "seconds": [1.0, 2.0, 3.0, 4.0], "peak_rss_mb": [100.0, 50.0, 120.0, 60.0]})
    write_table(table, layout.detection_table(), {})
    return layout


def test_top_examples_orders_by_mean_score_and_keeps_labels():
    train = _train()
    frame = top_examples(train, np.array([0.1, 3.0, -2.0, 0.5, 2.0, -1.0]), k=2)
    harmful, helpful = frame[frame.kind == "harmful"], frame[frame.kind == "helpful"]
    assert harmful["id"].tolist() == [1, 4] and harmful["flipped"].all()
    assert helpful["id"].tolist() == [2, 5] and helpful["score"].tolist() == [-2.0, -1.0]
    assert harmful["text"].tolist() == ["sentence 1", "sentence 4"]  # the empty text_b is left out
    assert list(frame.columns) == ["kind", "rank", "id", "text", "label", "clean_label", "flipped", "score"]
    with pytest.raises(ValueError, match="5 scores for 6"):
        top_examples(train, np.zeros(5), 2)


def test_top_examples_show_the_class_of_identification_tasks():
    train = _train().assign(class_name=lambda f: np.where(f["clean_label"] == 1, "pos", "neg"))
    frame = top_examples(train, np.arange(6.0), 1)
    assert frame["class_name"].tolist() == ["pos", "neg"] and frame["id"].tolist() == [5, 0]


def test_cli_top_k_reads_the_score_file_of_a_finished_run(run, capsys):
    cli.main(["top-k", "--run", str(run.root), "--task", "t1", "--method", "tracin", "-k", "2", "--csv"])
    frame = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert frame["id"].tolist() == [1, 4, 2, 5]  # mean over the two target samples of the total block
    np.testing.assert_allclose(frame["score"], [3.0, 2.0, -2.0, -1.0])
    cli.main(["top-k", "--run", str(run.root), "--task", "t1", "--method", "cosine", "-k", "1", "--kind", "harmful"])
    out = capsys.readouterr().out
    assert "sentence 2" in out and "sentence 1" not in out and "-2.0000" not in out and "2.0000" in out


@pytest.mark.parametrize("args, message", [
    (["--task", "t9", "--method", "tracin"], "tasks of this run: ['t1']"),
    (["--task", "t1", "--method", "lissa"], "scored: ['cosine', 'tracin']"),
])
def test_cli_top_k_names_what_exists(run, args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["top-k", "--run", str(run.root), *args])
    assert str(exc.value).startswith("inflbench: invalid input:") and message in str(exc.value)


def test_leaderboard_ranks_methods_over_tasks():
    table = pd.DataFrame({"task": ["a", "a", "b", "b", "b"], "method": ["m1", "m2", "m1", "m2", "m2"],
                          "auc": [0.9, 0.8, 0.6, 0.7, 0.9], "seconds": [1.0, 2.0, 3.0, 4.0, 5.0],
                          "peak_rss_mb": [10.0, 20.0, 30.0, 40.0, 5.0]})
    board = leaderboard(table).set_index("method")
    # task b: m2 has two replicate rows (mean 0.8, std 0.1414); m1 wins a, m2 wins b -> both rank 1.5
    assert board.loc["m2", "auc_b"] == pytest.approx(0.8) and board.loc["m2", "auc_std_b"] == pytest.approx(0.02 ** 0.5)
    assert board["rank"].tolist() == [1.5, 1.5]
    assert board.loc["m1", "auc_mean"] == pytest.approx(0.75) and board.loc["m2", "seconds"] == 6.5  # 2 + mean(4, 5)
    assert board.loc["m2", "peak_rss_mb"] == 40.0 and "auc_std_a" not in board


def test_summary_prints_the_headline_tables(run):
    text = cli.summary(run.root)
    assert text.startswith("Leaderboard")
    lines = text.splitlines()
    assert lines[2].split()[:3] == ["tracin", "1.500", "0.750"]  # rank 1 on t1, 2 on t2; tie -> AUC mean
    assert "Detection per task and method" in text and "top-k --run" in text
    with pytest.raises(Exception, match="no such run folder"):
        cli.summary(run.root / "nope")


def test_module_entry_point_runs_summary(run):
    proc = subprocess.run([sys.executable, "-m", "inflbench", "summary", str(run.root)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Leaderboard" in proc.stdout


def test_html_table_rounds_and_sorts(tmp_path):
    frame = pd.DataFrame({"method": ["a<b"], "auc": [0.9403515625000001], "tiny": [1.5e-7], "n": [3],
                          "flag": [True], "missing": [float("nan")]})
    html = htmltables.table_html(frame)
    assert ">0.940<" in html and "0.9403515625" not in html.split("data-v")[0]
    assert ">1.50e-07<" in html and ">3<" in html and ">True<" in html and "a&lt;b" in html
    assert 'class="sortable"' in html and ">auc</th>" in html and "<script" not in html


def test_markdown_summary_becomes_html_tables():
    html = htmltables.markdown_html("# Title\n\nSome *text* with **bold**.\n\n| a | b |\n|---|---|\n| 1 | x |\n- item")
    assert "<h3>Title</h3>" in html and "<i>text</i>" in html and "<b>bold</b>" in html
    assert ">a</th><th title=\"click to sort\"" in html and '<td data-v="1">1</td>' in html and "<li>item</li>" in html
    assert "---" not in html


def test_jobs_render_declared_html_outputs(tmp_path):
    csv, md = tmp_path / "t.csv", tmp_path / "s.md"
    pd.DataFrame({"x": [0.123456]}).to_csv(csv, index=False)
    md.write_text("| a |\n|---|\n| 2 |\n| a \\| b |\n")
    outputs = {"table": str(csv), "html": str(tmp_path / "t.html"), "s": str(md), "s_html": str(tmp_path / "s.html")}
    render_html_outputs(outputs)
    assert ">0.123<" in (tmp_path / "t.html").read_text()
    summary = (tmp_path / "s.html").read_text()
    assert '<td data-v="2">2</td>' in summary and '<td data-v="a | b">a | b</td>' in summary  # escaped bar
    with pytest.raises(ValueError, match="no .csv or .md output"):
        render_html_outputs({"html": str(tmp_path / "other.html")})


def test_cli_has_no_grid_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["grid", "configs/ablation-rank.yaml"])
    assert exc.value.code == 2 and "invalid choice: 'grid'" in capsys.readouterr().err  # now: snakemake grid
