"""What a GEMM of the benchmark's own block shapes reaches, against the square-GEMM probe of the roofline.

The Q roofline of benchmarks/bench_methods.py divides by the float32 rate of a 2048² GEMM. TracIn's Q work
is 96 products (900 x 4096) @ (4096 x 100) (RoBERTa-large LoRA blocks, n_train 900, n_test 100). This probe
times those products alone in three layouts, and TracIn through ``compute_influence`` on the same tensors,
in one run (best of ``--repeat``), and writes ``benchmarks/out/gemm_shapes.csv``. It also times the dense
float64 factorisation the exact methods run per block (``s = n_train``): the Cholesky factorisation, the
whole solve with one right-hand side (setting P) and an ``s x s`` float64 GEMM, each as a share of the square
float64 GEMM rate (flops ``s^3/3`` for a factorisation, ``+ 2 s^2`` for the solve, ``2 s^3`` for the GEMM),
and setting P (one test vector): a 512 MB GEMV (the bandwidth probe), one GEMV per train block (one read of
the store as laid out) and TracIn, in interleaved rounds, as multiples of one read of the store at the
probe's bandwidth (median and best of the rounds, each against the better probe's same statistic: the GEMV
multi-threaded, or a share of its rows per thread, single-threaded). Last, setting Q of ``datainf`` and ``exact_block`` (shared statistics) through
``compute_influence`` against the bare BLAS / LAPACK calls they make, interleaved with the square probes
(``method_vs_kernels``):

    python benchmarks/bench_gemm_shapes.py
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from inflbench.methods import compute_influence
from inflbench.methods._common import on_threads, split_evenly
from inflbench.solvers.common import even_slices

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_methods  # noqa: E402  (its cost model)


def best(f, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def method_vs_kernels(train: dict, test: dict, sq32: torch.Tensor, sq64: torch.Tensor, rounds: int) -> list[dict]:
    """Setting Q: a method through ``compute_influence`` against the bare BLAS / LAPACK calls it makes on the
    same blocks (operands prepared and outputs allocated beforehand, so nothing but the kernels runs; the
    float64 casts of the float32 blocks, which the float64 methods cannot skip, are part of theirs, except
    for ``exact_block+stats``, kept as in earlier runs), and the square GEMM probes, in interleaved rounds.
    Per round each wall time is set against that round's probes (``flops32 / rate32 + flops64 / rate64``,
    the minimal flops of ``bench_methods.cost``), so the host's drift between
    rounds cancels; the rows give the medians over the rounds. If the method's kernels ran slower inside the
    method than alone, ``method_over_kernels`` would exceed the bookkeeping the profiler shows."""
    from inflbench.methods._exact import use_woodbury
    from inflbench.methods._stats import block_stats
    from inflbench.methods.datainf import uses_gram
    from inflbench.solvers.common import lower_gram_
    from inflbench.solvers.direct import cholesky_solve

    n, m = next(iter(train.values())).shape[0], next(iter(test.values())).shape[0]
    d = sum(v.shape[1] for v in train.values())
    db = next(iter(train.values())).shape[1]
    if not use_woodbury(n, db, m) or uses_gram(n, m, db):
        print("method_vs_kernels: skipped (the bare sequences are the n x n Cholesky of exact_block and the "
              "d-side products of datainf; these sizes take the other forms)")
        return []
    stats = block_stats(train)
    pairs = [(train[k], test[k]) for k in train]
    C = torch.empty(n, m)
    Wt = torch.empty(m, pairs[0][0].shape[1])
    out32 = torch.empty(n, m)

    def datainf_kernels():  # C = X Tᵀ, Wᵀ = C'ᵀ X, X W (the d-side form the method picks here)
        for X, T in pairs:
            torch.mm(X, T.T, out=C)
            torch.mm(C.T, X, out=Wt)
            torch.mm(X, Wt.T, out=out32)

    damped = [stats.gram(k) + n * 1e-3 * torch.eye(n, dtype=torch.float64) for k in train]
    pairs64 = [(X.double(), T.double()) for X, T in pairs]
    C64 = torch.empty(n, m, dtype=torch.float64)

    def exact_kernels():  # per block: Cholesky, X Tᵀ in float64, two triangular solves
        for G, (X, T) in zip(damped, pairs64):
            torch.mm(X, T.T, out=C64)
            cholesky_solve(G, C64)

    # without shared statistics: the Gram's lower row tiles, from one float64 cast per block
    X64, T64 = torch.empty(n, db, dtype=torch.float64), torch.empty(m, db, dtype=torch.float64)
    K64, K32 = torch.empty(n, n, dtype=torch.float64), torch.empty(n, n)
    J64, JC64 = torch.empty(n, n, dtype=torch.float64), torch.empty(n, m, dtype=torch.float64)

    def damped_solve(K, C):  # K from its lower triangle, damped like the methods
        K.diagonal().add_(n * 1e-3 * K.diagonal().mean())
        cholesky_solve(K, C, lower_only=True)

    def exact_nostats_kernels(gram32=False):  # cast, Gram tiles, X Tᵀ, Cholesky, two triangular solves
        for X, T in pairs:
            if gram32:
                lower_gram_(K32, X)
                K64.copy_(K32)
            X64.copy_(X)
            T64.copy_(T)
            if not gram32:
                lower_gram_(K64, X64)
            torch.mm(X64, T64.T, out=C64)
            damped_solve(K64, C64)

    def joint_kernels(shared=False):  # per block: cast, Gram tiles (shared: the stored Gram added) and X Tᵀ
        J64.zero_()  # accumulated; one Cholesky and solve
        JC64.zero_()
        for k, (X, T) in zip(train, pairs):
            X64.copy_(X)
            T64.copy_(T)
            if shared:
                J64.add_(stats.gram(k))
            else:
                lower_gram_(J64, X64, accumulate=True)
            JC64.addmm_(X64, T64.T)
        damped_solve(J64, JC64)

    # hyperinf_fim with shared statistics: per block V = X Tᵀ, then per Schulz step W + R W and R's square
    # (its lower row tiles: the products sym_gram makes), as many steps as the method ran; R is a damped
    # residual I - c A of the block's Gram (spectral radius < 1), kept fixed so no value drifts
    fim = compute_influence("hyperinf_fim", train, test, block_stats=stats)
    steps = int(fim.meta["schulz_iterations_run"])
    residuals = []
    for k in train:
        A = stats.gram(k).float() / n
        A.diagonal().add_(1e-3 * A.diagonal().mean())
        residuals.append(torch.eye(n) - A / torch.linalg.matrix_norm(A, ord="fro"))
    Wa, Wb, R2 = torch.empty(n, m), torch.empty(n, m), torch.empty(n, n)

    def fim_kernels():
        for (X, T), R in zip(pairs, residuals):
            W, spare = Wa, Wb
            torch.mm(X, T.T, out=W)
            for _ in range(steps):
                torch.addmm(W, R, W, out=spare)
                W, spare = spare, W
                lower_gram_(R2, R)

    def casts():
        for X, T in pairs:
            X64.copy_(X)
            T64.copy_(T)

    dims = {k: v.shape[1] for k, v in train.items()}

    def flops(method, stats_=False, meta=None, **params):  # (flops32, flops64) of bench_methods' cost model
        c = bench_methods.cost(method, params, stats_, n, m, dims, {k: (v,) for k, v in dims.items()}, meta or {})
        return c["flops32"], c["flops64"]

    fl_stats, fl_block = flops("exact_block", True), flops("exact_block")
    fl_block32 = flops("exact_block", gram_dtype="float32")
    fl_joint, fl_joint_stats = flops("exact_joint"), flops("exact_joint", True)
    fl_fim = flops("hyperinf_fim", True, fim.meta)
    o32, o64 = torch.empty_like(sq32), torch.empty_like(sq64)
    fl_sq32, fl_sq64 = 2 * sq32.shape[0] ** 3, 2 * sq64.shape[0] ** 3
    ci = compute_influence
    cases = {
        "datainf Q (compute_influence)": (lambda: ci("datainf", train, test), flops("datainf")),
        "datainf Q, its kernels alone": (datainf_kernels, flops("datainf")),
        "exact_block+stats Q (compute_influence)": (lambda: ci("exact_block", train, test, block_stats=stats), fl_stats),
        "exact_block+stats Q, its kernels alone": (exact_kernels, fl_stats),
        "exact_block Q (compute_influence)": (lambda: ci("exact_block", train, test), fl_block),
        "exact_block Q, its kernels alone": (exact_nostats_kernels, fl_block),
        "exact_block[gram_dtype=float32] Q (compute_influence)": (
            lambda: ci("exact_block", train, test, gram_dtype="float32"), fl_block32),
        "exact_block[gram_dtype=float32] Q, its kernels alone": (lambda: exact_nostats_kernels(True), fl_block32),
        "exact_joint Q (compute_influence)": (lambda: ci("exact_joint", train, test), fl_joint),
        "exact_joint Q, its kernels alone": (joint_kernels, fl_joint),
        "exact_joint+stats Q (compute_influence)": (lambda: ci("exact_joint", train, test, block_stats=stats),
                                                    fl_joint_stats),
        "exact_joint+stats Q, its kernels alone": (lambda: joint_kernels(shared=True), fl_joint_stats),
        "hyperinf_fim+stats Q (compute_influence)": (lambda: ci("hyperinf_fim", train, test, block_stats=stats), fl_fim),
        "hyperinf_fim+stats Q, its kernels alone": (fim_kernels, fl_fim),
        "float64 casts of the store alone (train and test)": (casts, (0.0, 0.0)),
    }
    times = {k: [] for k in cases}
    rate32, rate64 = [], []
    for f, _ in cases.values():
        f()
    for _ in range(rounds):
        t0 = time.perf_counter()
        torch.mm(sq32, sq32, out=o32)
        rate32.append(fl_sq32 / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        torch.mm(sq64, sq64, out=o64)
        rate64.append(fl_sq64 / (time.perf_counter() - t0))
        for k, (f, _) in cases.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    rows = []
    for k, (_, (f32, f64)) in cases.items():
        wall = statistics.median(times[k])
        row = {"kernel": k, "wall_s": round(wall, 4), "square_gemm_gflops": round(statistics.median(rate64 if f64 else rate32) / 1e9, 1)}
        if k.startswith("float64 casts"):
            row["gbs"] = round(12 * (n + m) * d / wall / 1e9, 2)  # read float32, write float64
        if f32 + f64:
            frac = statistics.median((f32 / r32 + f64 / r64) / w for w, r32, r64 in zip(times[k], rate32, rate64))
            row.update(gflops=round((f32 + f64) / wall / 1e9, 1), fraction_of_square_gemm=round(frac, 3))
        method = k.split(",")[0] + " (compute_influence)"
        if k.endswith("alone") and method in times:
            row["method_over_kernels"] = round(statistics.median(a / b for a, b in zip(times[method], times[k])), 3)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-train", type=int, default=900)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--blocks", type=int, default=96)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "gemm_shapes.csv")
    ap.add_argument("--methods-only", action="store_true",
                    help="only the methods against their kernels (method_vs_kernels), 3 x --repeat rounds")
    args = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    train = {f"b{i}": torch.randn(args.n_train, args.dim, generator=g) for i in range(args.blocks)}
    test = {k: torch.randn(args.n_test, args.dim, generator=g) for k in train}
    pairs = [(train[k], test[k]) for k in train]
    square = torch.randn(2048, 2048, generator=g)
    square @ square
    load = os.getloadavg()[0]
    if args.methods_only:
        rows = method_vs_kernels(train, test, square, square[:1536, :1536].double(), 3 * args.repeat)
        return write(rows, args, load, None, None)
    rows = shape_rows(args, train, test, pairs, square, g)
    probe, probe64 = rows.pop()
    rows += method_vs_kernels(train, test, square, square[:1536, :1536].double(), 3 * args.repeat)
    return write(rows, args, load, probe, probe64)


def shape_rows(args, train, test, pairs, square, g) -> list:
    """The rows before ``method_vs_kernels``; the last item is ``(probe, probe64)``, the square GEMM rates."""
    layouts = {
        "bmm (n x d) @ (d x m), as tracin": lambda: [torch.bmm(a[None], b[None].transpose(1, 2)) for a, b in pairs],
        "mm (n x d) @ (m x d)^T": lambda: [a @ b.T for a, b in pairs],
        "mm ((m x d) @ (n x d)^T)^T": lambda: [(b @ a.T).T for a, b in pairs],
        "tracin (compute_influence)": lambda: compute_influence("tracin", train, test),
    }
    probe = 2 * 2048**3 / best(lambda: square @ square, args.repeat) / 1e9
    flops = 2 * args.n_train * args.n_test * args.dim * args.blocks
    rows = []
    for name, f in layouts.items():
        f()
        wall = best(f, args.repeat)
        rows.append({"kernel": name, "wall_s": round(wall, 4), "gflops": round(flops / wall / 1e9, 1),
                     "fraction_of_square_gemm": round(flops / wall / 1e9 / probe, 3)})
    probe = max(probe, 2 * 2048**3 / best(lambda: square @ square, args.repeat) / 1e9)  # best of both probes
    for r in rows:
        r["fraction_of_square_gemm"] = round(r["gflops"] / probe, 3)
    # the exact methods' per-block factorisation, float64, against the float64 square GEMM
    from inflbench.solvers.direct import cholesky, cholesky_solve

    sq64 = square[:1536, :1536].double()
    probe64 = 2 * 1536**3 / best(lambda: sq64 @ sq64, args.repeat) / 1e9
    s = args.n_train
    x = torch.randn(s, s + 16, generator=g, dtype=torch.float64)
    spd = x @ x.T + torch.eye(s, dtype=torch.float64)
    rhs = torch.randn(s, 1, generator=g, dtype=torch.float64)
    for name, f, fl in (("cholesky, LAPACK potrf (s x s, float64)", lambda: cholesky(spd), s**3 / 3),
                        ("cholesky_solve, one rhs, as exact P (float64)", lambda: cholesky_solve(spd, rhs),
                         s**3 / 3 + 2 * s**2),
                        ("gemm s x s (float64)", lambda: spd @ spd, 2 * s**3)):
        f()
        wall = best(f, args.repeat)
        rows.append({"kernel": name, "wall_s": round(wall, 5), "gflops": round(fl / wall / 1e9, 1),
                     "fraction_of_square_gemm": round(fl / wall / 1e9 / probe64, 3)})
    # the iterations of lissa / rrinf / hyperinf_fim on an n x n Gram: (n x n) @ (n x m) and (n x n) @ (n x 1)
    k32 = (spd.float() / s)
    for name, rhs_cols in (("gemm (n x n) @ (n x m), float32 (Gram iterations, Q)", args.n_test),
                           ("gemv (n x n) @ (n x 1), float32 (Gram iterations, P)", 1)):
        w = torch.randn(s, rhs_cols, generator=g)
        f = (lambda w=w: k32 @ w)
        f()
        wall = best(lambda: [f() for _ in range(96)], args.repeat) / 96
        fl = 2 * s * s * rhs_cols
        rows.append({"kernel": name, "wall_s": round(wall, 6), "gflops": round(fl / wall / 1e9, 1),
                     "fraction_of_square_gemm": round(fl / wall / 1e9 / probe, 3)})
    # setting P (one test vector): one read of the train store, interleaved rounds, median and best
    mean = {k: v.mean(0, keepdim=True) for k, v in test.items()}
    vecs = [mean[k][0] for k in train]
    big, ones = torch.ones(4096, 32768), torch.ones(32768)
    store = sum(a.numel() * 4 for a in train.values())
    row_parts = even_slices(big.shape[0], torch.get_num_threads())  # a share of the probe's rows per thread
    jobs = list(zip(train.values(), vecs))
    shares = split_evenly(jobs, [a.numel() for a, _ in jobs], torch.get_num_threads())

    def mvs(part):
        return [torch.mv(a, v) for a, v in part]

    probes = {"gemv 512 MB, one matrix (bandwidth probe)": (lambda: torch.mv(big, ones), big.numel() * 4),
              "gemv 512 MB, a share of the rows per thread (bandwidth probe)": (
                  lambda: on_threads(lambda r: torch.mv(big[r], ones), row_parts), big.numel() * 4)}
    reads = {**probes,
             "gemv per block (one read of the store)": (lambda: mvs(jobs), store),
             "gemv per block, a share of the blocks per thread": (lambda: on_threads(mvs, shares), store),
             "tracin P (compute_influence)": (lambda: compute_influence("tracin", train, mean), store)}
    times = {k: [] for k in reads}
    for f, _ in reads.values():
        f()
    for _ in range(3 * args.repeat):
        for k, (f, _) in reads.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    bw = {stat: max(big.numel() * 4 / f(times[k]) for k in probes)  # the better of the two probes
          for stat, f in (("median", statistics.median), ("best", min))}
    for k, (_, nbytes) in reads.items():
        for stat, f in (("median", statistics.median), ("best", min)):
            wall = f(times[k])
            rows.append({"kernel": f"{k} [{stat}]", "wall_s": round(wall, 5), "gbs": round(nbytes / wall / 1e9, 2),
                         "times_one_read_at_probe_bw": round(wall / (store / bw[stat]), 3)})
    return rows + [(probe, probe64)]


def write(rows: list, args, load: float, probe, probe64) -> int:
    for r in rows:
        # method_vs_kernels rows already carry the median of their own rounds' probes
        if "square_gemm_gflops" not in r:
            r["square_gemm_gflops"] = round(probe64 if "float64" in r["kernel"] else probe, 1)
        r.update({"n_train": args.n_train, "n_test": args.n_test, "blocks": args.blocks, "dim": args.dim,
                  "threads": torch.get_num_threads(), "loadavg_1m": load})
        rate = (f"{r['gflops']:7.1f} GFLOP/s  {r['fraction_of_square_gemm']:.2f}" if "gflops" in r else
                f"{r['gbs']:7.2f} GB/s  {r['times_one_read_at_probe_bw']:.2f}x one read"
                if "times_one_read_at_probe_bw" in r else f"{r['gbs']:7.2f} GB/s")
        ratio = f"  method / kernels {r['method_over_kernels']}" if "method_over_kernels" in r else ""
        print(f"{r['kernel']:56s} {r['wall_s']:8.4f}s {rate}{ratio}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out} (load {load:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
