"""End to end: the tiny grid through the workflow's Snakefile (target ``synthetic``), bad input, and lint."""
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from common import ROOT, snakemake
from inflbench.paths import Layout
from inflbench.studies.synthetic import stages
from inflbench.studies.synthetic.config import CLOSED_FORM_SOLVERS, validate_config
from inflbench.studies.synthetic.runner import COLUMNS

TINY = ROOT / "tests" / "synthetic" / "config.tiny.yaml"


def _snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the workflow with the tiny grid in ``workdir`` (its own .snakemake/, no lock shared with the
    repository); extra ``--configfile`` arguments come after the tiny grid."""
    args = list(args)
    extra = []
    if "--configfile" in args:
        i = args.index("--configfile")
        extra, args = args[i + 1:i + 2], args[:i] + args[i + 2:]
    return snakemake(*args, "--configfile", str(TINY), *extra, workdir=workdir, timeout=timeout)


@pytest.mark.slow
def test_tiny_grid_end_to_end(tmp_path):
    results = tmp_path / "results"
    proc = _snakemake(tmp_path, "synthetic", "--cores", "2", "--config", f"results_dir={results}", "run=tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = validate_config(yaml.safe_load(TINY.read_text())["synthetic"])
    P = Layout(results, "tiny")
    for target in stages.targets(P, cfg):
        assert Path(target).stat().st_size > 0, target
    conv = pd.read_csv(P.synthetic_convergence())
    assert list(conv.columns) == COLUMNS
    n_cells = len(cfg["dims"]) * len(cfg["n_samples"]) * len(cfg["distributions"]) * len(cfg["seeds"])
    per_cell = sum(1 if s in CLOSED_FORM_SOLVERS else cfg["iterations"] for s in cfg["solvers"])
    assert len(conv) == n_cells * per_cell
    assert conv.groupby(["distribution", "d", "N", "seed"]).ngroups == n_cells
    assert (conv["seconds"] >= 0).all() and conv["error"].notna().any()
    for fig in stages.figure_files(P, cfg):
        assert Path(fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    timing = Path(P.synthetic_table(table=stages.TABLE_TIMING, ext="md")).read_text()
    for d in cfg["dims"]:
        assert f"\n| {d} |" in timing
    assert "Table 10 layout" in timing
    summary = Path(P.synthetic_summary()).read_text()
    assert Path(P.log(stage="synthetic_cell", name=stages.cell_name(cfg["distributions"][0], cfg["dims"][0],
                                                                   cfg["n_samples"][0], cfg["seeds"][0]))).is_file()
    assert "| schulz_paper_converges |" in summary and "**" in summary
    # cached per-cell results: a second run has nothing to do
    again = _snakemake(tmp_path, "synthetic", "-n", "--config", f"results_dir={results}", "run=tiny")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize("bad, key", [
    ({"dims": [-1]}, "synthetic.dims"),
    ({"n_samples": [0, 200]}, "synthetic.n_samples"),
    ({"damping": 0}, "synthetic.damping"),
    ({"distributions": ["cauchy"]}, "synthetic.distributions"),
    ({"solvers": ["magic"]}, "synthetic.solvers"),
])
def test_bad_input_fails_before_any_job(tmp_path, bad, key):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"results_dir": str(tmp_path / "r"), "synthetic": bad}))
    proc = _snakemake(tmp_path, "synthetic", "--cores", "1", "--configfile", str(config), timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "invalid input" in ln]
    assert len(lines) == 1 and f"config key '{key}'" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_command_line_override_is_validated(tmp_path):
    # Snakemake hands nested --config values over as strings; numbers are read back, bad ones still fail
    proc = _snakemake(tmp_path, "synthetic", "-n", "--config", f"results_dir={tmp_path / 'r'}",
                      "synthetic={'dims': [-1]}", timeout=120)
    assert proc.returncode != 0 and "config key 'synthetic.dims': must be positive integers, got [-1]" in proc.stderr


def test_lint_is_clean_for_synthetic_rules(tmp_path):
    proc = _snakemake(tmp_path, "--lint", "--config", f"results_dir={tmp_path / 'r'}", timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Lints for rule synthetic" not in out and "Lints for snakefile" not in out, out[-3000:]
