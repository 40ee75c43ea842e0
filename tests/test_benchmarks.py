"""Smoke runs of the benchmark scripts at toy sizes: they run, write the columns the docs read, and the
numbers in them are consistent (no timings are asserted)."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_bench_methods_smoke(tmp_path):
    bench = load("bench_methods")
    out = tmp_path / "methods.csv"
    labels = ["tracin", "lissa+stats", "hyperinf_fim[direct]+stats"]
    assert bench.main(["--quick", "--methods", *labels, "--out", str(out)]) == 0
    rows = rows_of(out)
    # the references run first whatever is asked for, and the statistics row comes first
    assert rows[0]["config"] == "block_stats"
    got = {(r["config"], r["setting"]) for r in rows[1:]}
    want = {(c, s) for c in [*labels, *bench.REFS] for s in ("P", "Q")}
    assert got == want
    for r in rows:
        for col in ("wall_s", "roofline", "roofline_paired", "host_factor"):
            assert math.isfinite(float(r[col])) and float(r[col]) > 0, (r["config"], col, r[col])
    by = {(r["config"], r["setting"]): r for r in rows[1:]}
    for s in ("P", "Q"):
        # the exact path with shared statistics is its own reference; hyperinf_fim[direct] solves the same system
        assert float(by["exact_block+stats", s]["spearman_vs_exact_block"]) == pytest.approx(1.0)
        assert float(by["hyperinf_fim[direct]+stats", s]["spearman_vs_exact_block"]) > 0.9999
        assert float(by["tracin", s]["roofline_kernels"]) > 0  # the profiled split ran
    table = load("methods_table")
    assert table.main([str(out)]) == 0


@pytest.mark.slow
def test_bench_gemm_shapes_smoke(tmp_path):
    bench = load("bench_gemm_shapes")
    out = tmp_path / "shapes.csv"
    # n = 64, m = 20, d_b = 512: datainf takes the X^T C form and exact_block the n x n one, so the
    # method-against-kernels rows run too
    assert bench.main(["--n-train", "64", "--n-test", "20", "--blocks", "4", "--dim", "512", "--repeat", "1",
                       "--out", str(out)]) == 0
    rows = {r["kernel"]: r for r in rows_of(out)}
    methods = ("datainf Q", "exact_block+stats Q", "exact_block Q", "exact_block[gram_dtype=float32] Q",
               "exact_joint Q", "exact_joint+stats Q", "hyperinf_fim+stats Q")
    for method in methods:
        alone = rows[f"{method}, its kernels alone"]
        assert float(alone["method_over_kernels"]) > 0
        assert float(rows[f"{method} (compute_influence)"]["fraction_of_square_gemm"]) > 0
    read = rows["gemv per block (one read of the store) [median]"]
    assert float(read["times_one_read_at_probe_bw"]) > 0
    only = tmp_path / "methods_only.csv"
    assert bench.main(["--n-train", "64", "--n-test", "20", "--blocks", "2", "--dim", "512", "--repeat", "1",
                       "--methods-only", "--out", str(only)]) == 0
    kernels = list(rows)
    assert [r["kernel"] for r in rows_of(only)] == kernels[kernels.index("datainf Q (compute_influence)"):]


@pytest.mark.slow
def test_gpu_smoke_runs_on_the_cpu(tmp_path):
    """The GPU smoke script's path (device run + CPU comparison) at toy size, with the CPU as the device."""
    smoke = load("gpu_smoke")
    methods = ["tracin", "exact_joint", "rrinf", "hyperinf[solver=direct]"]
    smoke.main(["--device", "cpu", "--check-on-cpu", "--layers", "1", "--n-train", "24", "--n-test", "8",
                "--n-check", "8", "--n-finetune", "8", "--decoder-layers", "0", "--no-ekfac", "--grad-seconds", "1",
                "--score-seconds", "600", "--out", str(tmp_path), "--methods", *methods])
    rows = rows_of(tmp_path / "gpu_smoke.csv")
    assert rows and all(r["status"] == "ok" for r in rows), [(r["step"], r["item"], r["note"]) for r in rows]
    checks = {r["item"]: r for r in rows if r["step"] == "scores_vs_cpu"}
    scored = {r["item"] for r in rows if r["step"] == "scores"}
    assert set(checks) == set(methods) == scored
    for r in checks.values():  # the same device twice: identical scores
        assert float(r["max_rel_err"]) == 0.0 and float(r["corr"]) == pytest.approx(1.0)
    for step in ("gradients_vs_cpu", "block_stats_vs_cpu"):
        found = [r for r in rows if r["step"] == step]
        assert len(found) == 1 and float(found[0]["max_rel_err"]) == 0.0, step


def test_kernel_profile_counts_the_in_place_blas_calls():
    """The BLAS products the methods issue in place (accumulating Grams, LiSSA's and RRInf's steps) are
    kernels in the profile, as their out-of-place forms: each call's own op is in ``KERNEL_OPS``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    bench = load("bench_methods")
    A, B, x = torch.randn(50, 40), torch.randn(40, 30), torch.randn(40)
    C, v = torch.zeros(50, 30), torch.zeros(50)
    A3, B3, C3 = torch.randn(2, 50, 40), torch.randn(2, 40, 30), torch.zeros(2, 50, 30)
    calls = {"aten::addmm_": lambda: C.addmm_(A, B, alpha=0.5), "aten::addmv_": lambda: v.addmv_(A, x),
             "aten::baddbmm_": lambda: C3.baddbmm_(A3, B3), "aten::mm": lambda: torch.mm(A, B, out=C),
             "aten::addmm": lambda: torch.addmm(C, A, B, beta=0.0, alpha=2.0, out=C)}
    for op, call in calls.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            call()
        assert op in {e.key for e in prof.key_averages()}
        assert op in bench.KERNEL_OPS, op
