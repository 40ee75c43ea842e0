"""Benchmark of the influence methods: wall time, peak memory, cost model, roofline, agreement with exact.

Writes ``benchmarks/out/methods.csv`` (one row per method configuration and setting):

    python benchmarks/bench_methods.py --n-train 900 --n-test 100
    python benchmarks/bench_methods.py --quick
    python benchmarks/bench_methods.py --grads results/<run>/grads   # real cached gradients

Settings: ``Q`` scores every training sample against every test sample (what the workflow stores);
``P`` against the mean test gradient (one test vector, what the papers' detection code runs).
Configurations ending in ``+stats`` are given the shared block statistics (computed once per store,
timed in the ``block_stats`` row) instead of rebuilding their Grams; those ending in ``+norms`` the train
gradients' per-sample squared norms, as a gradient store supplies them to every scoring job (written with
the gradients), instead of a pass over the store.

Each row has the minimal floating-point work (``flops32``, ``flops64``) and memory traffic (``bytes``)
of the method as run (formulas in docs/methods.md, "Cost model"), and ``roofline`` = the bound
``max(flops32/gemm_f32 + flops64/gemm_f64, bytes/read_bw)`` divided by the wall time, from a GEMM and
read-bandwidth probe of the same run (``gemm_f32_gflops``, ``gemm_f64_gflops``, ``read_gbs``). With
``--threads 1`` both the probe and the roofline use process CPU time instead of wall time, so the share
of the cores that other jobs take on a shared machine cancels out. ``roofline_shape`` is the same bound
with the rates the method's own kernel shapes allow, probed in the same run: the float32 GEMM rate of the
bare per-block products ``(n x d_b) @ (d_b x m)`` at ``m = n_test`` (best of three layouts,
``gemm_f32_shape_gflops``), the read bandwidth of one bare GEMV per block over the train store
(``read_blocks_gbs``), and ``kernel_probe``'s rates of the Gram formation, the iteration products, the Schulz
squaring, the float64 Cholesky and the triangular solves at the sizes the methods give them (each the
fastest bare kernel the methods can call: a full GEMM or 4 or 8 lower row tiles, and torch's LAPACK). Scipy's
OpenBLAS ``syrk`` / ``potrf`` are not counted: alone they can be faster, but alternated with torch's MKL
products in one process both slow down (docs/methods.md, "Kernel probe and cap"). A method can at best
reach about 1 there. ``roofline_cap`` = ``roofline / roofline_shape``: the most the square-GEMM
``roofline`` (the issue-level measure) can reach with these kernels and no bookkeeping at all, so a row
whose cap is below a target cannot meet it on this host with these libraries.

``roofline_paired``: every timed call is bracketed by a short probe (``probe(reps=2)``); the bound at the
mean of the two probes' rates over that call's wall time, the median over the repeats. On a shared host
whose speed drifts between rows this is the fairer fraction; ``host_factor`` is the median paired float32
rate over the run's best probe.

For every row one extra untimed call under ``torch.profiler`` splits it:
``kernel_s`` is the self time of the BLAS / LAPACK calls (``KERNEL_OPS``), ``kernel_share`` that over the
profiled call's wall time (the rest is bookkeeping: copies, casts, element-wise updates, the interpreter),
and ``roofline_kernels`` the bound over ``kernel_s`` alone, i.e. the share of the square-GEMM / GEMV rate
the library kernels reached at the shapes the method gave them; ``other_ops_s`` is the self time of the
other ops (what is left of the wall time is the interpreter between ops). So ``roofline`` is about
``roofline_kernels x kernel_share``: a low first factor is the library at those shapes, a low second one
is ours. ``top_ops`` lists the five largest self times. ``--no-profile`` skips the extra call.

Synthetic gradients use RoBERTa-large LoRA shapes (24 layers x query/value x
A (4x1024) and B (1024x4), d = 393,216) with realistic structure (latent
class structure seen through a decaying spectrum, isotropic noise floor,
log-normal per-sample norms); see ``tests/methods/synthetic_grads.py``.

Agreement columns compare each method's scores with ``exact_block`` and
``exact_joint`` of the same setting: ``spearman_*`` is the Spearman rank
correlation over training samples, averaged over test samples; ``top20_*``
is the overlap of the 20% highest-scoring (most harmful) training samples,
averaged over test samples; ``rel_err_*`` is ``max|s - ref| / max|ref|``.
Peak memory is the peak resident-set growth during the call (sampled every 5 ms).
``cpu_s`` is the process CPU time of the call; ``loadavg_1m`` the machine's load
just before it. Not a timed test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import platform
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "methods"))  # synthetic_grads

from inflbench.methods import compute_influence  # noqa: E402
from inflbench.methods.datainf import uses_gram as datainf_uses_gram  # noqa: E402
from inflbench.methods._common import on_threads, split_evenly  # noqa: E402
from inflbench.solvers.common import even_slices, lower_gram_  # noqa: E402
from synthetic_grads import roberta_lora_shapes, synthetic_grads  # noqa: E402

# (label, method, params, shared block statistics?). Defaults first, then fast paths and published options.
CONFIGS: list[tuple[str, str, dict, bool]] = [
    ("tracin", "tracin", {}, False),
    ("cosine", "cosine", {}, False),
    ("cosine+norms", "cosine", {}, False),
    ("datainf", "datainf", {}, False),
    ("datainf+norms", "datainf", {}, False),
    ("lissa", "lissa", {}, False),
    ("lissa+stats", "lissa", {}, True),
    ("lissa[published]", "lissa", {"variant": "published"}, False),
    ("lissa[published]+stats", "lissa", {"variant": "published"}, True),
    ("hyperinf", "hyperinf", {}, False),
    ("hyperinf[direct]", "hyperinf", {"solver": "direct"}, False),
    ("hyperinf_fim", "hyperinf_fim", {}, False),
    ("hyperinf_fim+stats", "hyperinf_fim", {}, True),
    ("hyperinf_fim[direct]+stats", "hyperinf_fim", {"solver": "direct"}, True),
    ("rrinf", "rrinf", {}, False),
    ("rrinf+stats", "rrinf", {}, True),
    ("rrinf[paper:neuron,1000,published]", "rrinf", {"variant": "published", "sampling": "neuron", "iterations": 1000, "lr": 0.01}, False),
    ("exact_block", "exact_block", {}, False),
    ("exact_block[gram_dtype=float32]", "exact_block", {"gram_dtype": "float32"}, False),
    ("exact_block+stats", "exact_block", {}, True),
    ("exact_joint", "exact_joint", {}, False),
    ("exact_joint+stats", "exact_joint", {}, True),
]
REFS = ("exact_block+stats", "exact_joint+stats")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak RSS growth over the baseline at entry, sampled by a background thread."""

    def __enter__(self):
        gc.collect()
        self.base = rss_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


_PROBE: dict = {}


def probe(reps: int = 3) -> dict:
    """Achieved GEMM throughput (float32, float64) and read bandwidth (one GEMV over 512 MB) right now,
    best of ``reps``. The operands are allocated once per process, so repeated probes touch no new pages."""
    if not _PROBE:
        _PROBE.update(a32=torch.randn(2048, 2048), a64=torch.randn(1536, 1536, dtype=torch.float64),
                      o32=torch.empty(2048, 2048), o64=torch.empty(1536, 1536, dtype=torch.float64),
                      big=torch.ones(4096, 32768), v=torch.ones(32768), y=torch.empty(4096))
    P = _PROBE
    out = {}
    for key, a, o in (("gemm_f32_gflops", P["a32"], P["o32"]), ("gemm_f64_gflops", P["a64"], P["o64"])):
        torch.mm(a, a, out=o)
        best = min(_timed(lambda: torch.mm(a, a, out=o)) for _ in range(reps))
        out[key] = round(2 * a.shape[0] ** 3 / best / 1e9, 1)
    row_parts = even_slices(P["big"].shape[0], torch.get_num_threads())  # also one single-threaded GEMV per thread
    best = min(min(_timed(lambda: torch.mv(P["big"], P["v"], out=P["y"])),
                   _timed(lambda: on_threads(lambda r: torch.mv(P["big"][r], P["v"], out=P["y"][r]), row_parts)))
               for _ in range(reps))
    out["read_gbs"] = round(P["big"].numel() * 4 / best / 1e9, 2)
    return out


def paired_rates(before: dict, after: dict) -> dict:
    """The square rates during one timed call: the mean of the probes just before and just after it."""
    return {k: (before[k] + after[k]) / 2 for k in before}


def shape_probe(train: dict, test: dict) -> dict:
    """Rates the block shapes themselves allow: the bare float32 products of every train block with its
    test block (best of three layouts), one GEMV per train block (a plain pass over the store), and the
    symmetric and factorisation kernels at the sizes the methods give them (``kernel_probe``)."""
    pairs = [(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)) for a, b in zip(train.values(), test.values())]
    vecs = [b[0].contiguous() for _, b in pairs]
    flops = sum(2 * a.shape[0] * b.shape[0] * a.shape[1] for a, b in pairs)
    nbytes = sum(a.numel() * a.element_size() for a, _ in pairs)
    layouts = (lambda: [torch.bmm(a[None], b[None].transpose(1, 2)) for a, b in pairs],
               lambda: [a @ b.T for a, b in pairs],
               lambda: [(b @ a.T).T for a, b in pairs])
    gemm = min(min(_timed(f) for _ in range(3)) for f in layouts)
    # the two other thin products of datainf / matrix-free lissa / rrinf: X^T C (d_b x n)(n x m), X W (n x d_b)(d_b x m);
    # X^T C also as (C^T X)^T (what datainf computes: 1.45x faster on an AVX2 host)
    coefs = [torch.randn(a.shape[0], b.shape[0]) for a, b in pairs]
    xtc = min(min(_timed(f) for _ in range(3)) for f in (lambda: [a.T @ c for (a, _), c in zip(pairs, coefs)],
                                                           lambda: [c.T @ a for (a, _), c in zip(pairs, coefs)]))
    ws = [torch.randn(a.shape[1], b.shape[0]) for a, b in pairs]
    xw = min(_timed(lambda: [a @ w for (a, _), w in zip(pairs, ws)]) for _ in range(3))
    jobs = list(zip(pairs, vecs))

    def mvs(part):
        return [torch.mv(a, v) for (a, _), v in part]

    parts = split_evenly(jobs, [a.numel() for (a, _), _ in jobs], torch.get_num_threads())  # a share per thread
    gemv = min(min(_timed(lambda: mvs(jobs)), _timed(lambda: on_threads(mvs, parts))) for _ in range(5))
    m = pairs[0][1].shape[0]
    side = max(max(v.shape[1:]) if v.dim() > 2 else v.shape[1] for v in train.values())
    return {"gemm_f32_shape_gflops": round(flops / gemm / 1e9, 1), "read_blocks_gbs": round(nbytes / gemv / 1e9, 2),
            "gemm_f32_xtc_gflops": round(flops / xtc / 1e9, 1), "gemm_f32_xw_gflops": round(flops / xw / 1e9, 1),
            **kernel_probe(pairs[0][0], side, m)}


def _syrk_seconds(X) -> float:
    """Fastest bare kernel for ``X X^T`` (p x q) that the methods can call: a full GEMM or 4 or 8 lower row
    tiles, best of three each."""
    K = torch.empty(X.shape[0], X.shape[0], dtype=X.dtype)
    ways = [lambda: torch.matmul(X, X.T, out=K), lambda: lower_gram_(K, X, tiles=4), lambda: lower_gram_(K, X, tiles=8)]
    return min(min(_timed(f) for _ in range(3)) for f in ways)


def kernel_probe(X: torch.Tensor, side: int, m: int) -> dict:
    """Rates of the kernels that are not thin products, at the method's sizes, all in the cost model's
    flops (so a full GEMM standing in for a symmetric product shows at half its rate). ``s = min(n, d_b)``
    of the store block ``X`` (n x d_b); ``side`` the long side of the per-sample LoRA matrices (HyperINF's
    GFIM); ``m`` test samples (``m * d_b / side`` right-hand sides on HyperINF's side).

    * ``syrk_f32_gflops`` / ``syrk_f64_gflops``: Gram formation ``X X^T`` (``n^2 d_b``);
    * ``gemm_f32_s_gflops``, ``gemm_f32_side_gflops``: an iteration step, a square matrix times the
      right-hand sides (``2 s^2 k``, ``k`` right-hand sides);
    * ``square_f32_s_gflops``, ``square_f32_side_gflops``: a Schulz squaring of a symmetric matrix (``s^3``);
    * ``potrf_f64_s_gflops``, ``potrf_f64_side_gflops``: float64 Cholesky (``s^3 / 3``), torch's LAPACK;
    * ``trsm_f64_s_gflops``, ``trsm_f64_side_gflops``: the two triangular solves (``2 s^2 k``, ``k``
      right-hand sides)."""
    n, q = X.shape
    out = {"syrk_f32_gflops": round(n * n * q / _syrk_seconds(X.float()) / 1e9, 1),
           "syrk_f64_gflops": round(n * n * q / _syrk_seconds(X.double()) / 1e9, 1)}
    gen = torch.Generator().manual_seed(0)
    for tag, size, rhs in (("s", min(n, q), m), ("side", side, m * max(1, q // side))):
        S = torch.randn(size, size, generator=gen)
        R = torch.randn(size, rhs, generator=gen)
        out[f"gemm_f32_{tag}_gflops"] = round(2 * size * size * rhs / min(_timed(lambda: S @ R) for _ in range(3)) / 1e9, 1)
        out[f"square_f32_{tag}_gflops"] = round(size**3 / _syrk_seconds((S + S.T) * 0.5) / 1e9, 1)
        Y = torch.randn(size, 2 * size, generator=gen, dtype=torch.float64)
        A = Y @ Y.T / (2 * size)
        A.diagonal().add_(1e-3)
        best = min(_timed(lambda: torch.linalg.cholesky_ex(A)) for _ in range(7))  # LAPACK timings scatter: best of 7
        out[f"potrf_f64_{tag}_gflops"] = round(size**3 / 3 / best / 1e9, 1)
        Lc = torch.linalg.cholesky(A)
        B = torch.randn(size, rhs, dtype=torch.float64, generator=gen)
        solve = lambda: torch.linalg.solve_triangular(Lc.T, torch.linalg.solve_triangular(Lc, B, upper=False),
                                                      upper=True)
        out[f"trsm_f64_{tag}_gflops"] = round(2 * size * size * rhs / min(_timed(solve) for _ in range(7)) / 1e9, 1)
    return out


def _timed(f) -> float:
    """Seconds of ``f``: wall time, or with one thread the process CPU time (which the share of the
    cores other jobs take does not inflate; the roofline then compares CPU times on both sides)."""
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    t0 = clock()
    f()
    return clock() - t0


# --------------------------------------------------------------------------- cost model (docs/methods.md)


def cost(method: str, params: dict, stats: bool, n: int, m: int, dims: dict, shapes: dict, meta: dict) -> dict:
    """Minimal (flops32, flops64, bytes) of the method as configured; see docs/methods.md "Cost model"."""
    from inflbench.methods.lissa import lissa_route

    d = sum(dims.values())
    one_read = 4 * (n + m) * d  # the train and test stores, float32
    f32 = f64 = 0.0
    thin = 0.0  # float32 work done as per-block products (n x d_b) @ (d_b x m): at the shape's own GEMM rate
    extra = 0.0  # bytes beyond one read of the store
    # parts of f32 / f64 done by other kernels, each at its own probed rate in the shape bound (kernel_probe)
    k = dict.fromkeys(KERNEL_RATES, 0.0)  # _s: at s = min(n, d_b); _side: at HyperINF's L
    if method in ("tracin", "cosine"):
        thin = 2 * n * m * d
        f32 = thin + (2 * n * d if method == "cosine" else 0)
    elif method == "datainf":
        for db in dims.values():
            if datainf_uses_gram(n, m, db):
                f32 += n * n * db + 2 * n * m * db + 2 * n * n * m
                thin += 2 * n * m * db
                k["syrk32"] += n * n * db
                k["gemm32_s"] += 2 * n * n * m
            else:
                f32 += 6 * n * m * db
                thin += 2 * n * m * db  # C = X T^T
                k["xtc32"] += 2 * n * m * db  # W = X^T C'
                k["xw32"] += 2 * n * m * db  # X W
                extra += 2 * 4 * n * db  # W = X^T coef and X W each need X again
    elif method == "lissa":
        depth = params.get("depth", 10)
        published = params.get("variant") == "published"
        for db in dims.values():
            have = ("n" if n <= db else "d") if stats else None
            route = lissa_route(n, db, m, depth, gram_needed=params.get("scale") is None and not published, have=have)
            s = min(n, db)
            thin += 2 * n * m * db
            if route == "matfree":
                k["xw32"] += depth * 2 * n * db * m
                k["xtc32"] += depth * 2 * n * db * m
                f32 += depth * 4 * n * db * m + 2 * n * m * db
                extra += 2 * depth * 4 * n * db + (8 * s * s if stats and not published else 0)
            elif route == "nspace":
                f32 += (0 if have == "n" else n * n * db) + 2 * n * m * db + depth * 2 * n * n * m
                k["syrk32"] += 0 if have == "n" else n * n * db
                k["gemm32_s"] += depth * 2 * n * n * m
                extra += 8 * n * n if have == "n" else 0
            else:
                f32 += (0 if have == "d" else n * db * db) + depth * 2 * db * db * m + 2 * n * m * db
                k["syrk32"] += 0 if have == "d" else n * db * db
                extra += 8 * db * db if have == "d" else 0
    elif method == "hyperinf":
        it = float(meta.get("schulz_iterations_run", params.get("iterations", 20)))
        for name, db in dims.items():
            L = max(shapes[name]) if len(shapes[name]) > 1 else db
            r = db // L
            f32 += L * L * n * r + 2 * n * m * db
            thin += 2 * n * m * db
            k["syrk32"] += L * L * n * r
            rows = min(n, m) * r
            if params.get("solver") == "direct":
                f64 += L**3 / 3 + 2 * L * L * rows
                k["potrf64_side"] += L**3 / 3
                k["trsm64_side"] += 2 * L * L * rows
            else:
                f32 += it * (L**3 + 2 * L * L * rows)
                k["square32_side"] += it * L**3
                k["gemm32_side"] += it * 2 * L * L * rows
    elif method in ("hyperinf_fim", "exact_block", "exact_joint"):
        direct = method != "hyperinf_fim" or params.get("solver") == "direct"
        it = float(meta.get("schulz_iterations_run", params.get("iterations", 20)))
        for db in dims.values():
            s = min(n, db)
            on_n = method == "exact_joint" or n <= db
            gram = 0.0 if stats and (n <= db or method != "exact_joint") else (n * n * db if on_n else n * db * db)
            extra += 8 * (n * n if on_n else db * db) if stats else 0
            if method == "exact_joint":
                f64 += gram + 2 * n * m * db
                k["syrk64"] += gram
                continue
            if direct:
                gram_f32 = params.get("gram_dtype") == "float32"
                f32 += gram if gram_f32 else 0.0
                f64 += (0.0 if gram_f32 else gram) + 2 * n * m * db + s**3 / 3 + 2 * s * s * m
                k["syrk32" if gram_f32 else "syrk64"] += gram
                k["potrf64_s"] += s**3 / 3
                k["trsm64_s"] += 2 * s * s * m
            else:
                f32 += gram + 2 * n * m * db + it * (s**3 + 2 * s * s * m)
                thin += 2 * n * m * db
                k["syrk32"] += gram
                k["square32_s"] += it * s**3
                k["gemm32_s"] += it * 2 * s * s * m
        if method == "exact_joint":
            f64 += n**3 / 3 + 2 * n * n * m
            k["potrf64_s"] += n**3 / 3
            k["trsm64_s"] += 2 * n * n * m
    elif method == "rrinf":
        it = params.get("iterations", 1000)
        if params.get("sampling", "layer") == "neuron":
            f32 = it * 4.0 * n * m
            extra = it * 64.0 * n - one_read  # one cache line per gathered element; the store is not streamed
        else:
            visits = it / len(dims)
            for db in dims.values():
                if stats and n <= db:
                    f32 += visits * 2 * n * n * m + 2 * n * m * db
                    thin += 2 * n * m * db
                    k["gemm32_s"] += visits * 2 * n * n * m
                    extra += 8 * n * n + visits * 4 * n * n
                else:
                    direct_f = visits * 4 * n * db * m
                    gram_f = n * n * db + visits * 2 * n * n * m + 2 * n * m * db
                    if direct_f <= gram_f:  # X^T (X w) per visit: half of it each thin layout
                        f32 += direct_f
                        k["xw32"] += direct_f / 2
                        k["xtc32"] += direct_f / 2
                        extra += visits * 2 * 4 * n * db
                    else:
                        f32 += gram_f
                        k["syrk32"] += n * n * db
                        k["gemm32_s"] += visits * 2 * n * n * m
                        thin += 2 * n * m * db
                        extra += visits * 4 * n * n
    return {"flops32": f32, "flops64": f64, "bytes": one_read + extra, "flops32_thin": thin,
            **{f"flops_{key}": v for key, v in k.items()}}


#: cost-model kernel parts -> the probe column of their rate in the shape bound (``kernel_probe``)
KERNEL_RATES = {"syrk32": "syrk_f32_gflops", "syrk64": "syrk_f64_gflops",
                "xtc32": "gemm_f32_xtc_gflops", "xw32": "gemm_f32_xw_gflops",
                **{f"{k}_{t}": f"{k[:-2]}_f{k[-2:]}_{t}_gflops" for k in ("gemm32", "square32", "potrf64", "trsm64")
                   for t in ("s", "side")}}


def bound_seconds(c: dict, probe_: dict, shape: bool = False) -> tuple[float, str]:
    """The roofline bound in seconds and what binds it. Square: every flop at the square-GEMM rate of its
    precision, the bytes at the 512 MB-GEMV bandwidth. ``shape``: each part at the rate the best bare kernel
    reaches at the method's own sizes: per-block products at ``gemm_f32_shape_gflops``, Gram formation,
    Schulz squaring, Cholesky and triangular solves at ``kernel_probe``'s rates, the store read at the
    per-block GEMV bandwidth; the rest stays at the square rates."""
    r32, r64 = probe_["gemm_f32_gflops"] * 1e9, probe_["gemm_f64_gflops"] * 1e9
    t_flops = c["flops32"] / r32 + c["flops64"] / r64
    if shape:
        thin = c.get("flops32_thin", 0.0)
        t_flops += thin / (probe_["gemm_f32_shape_gflops"] * 1e9) - thin / r32
        for key, col in KERNEL_RATES.items():
            f = c.get(f"flops_{key}", 0.0)
            if f:
                t_flops += f / (probe_[col] * 1e9) - f / (r32 if "32" in key else r64)
    t_bytes = c["bytes"] / (probe_["read_blocks_gbs" if shape else "read_gbs"] * 1e9)
    return max(t_flops, t_bytes), ("compute" if t_flops >= t_bytes else "memory")


def roofline(c: dict, probe_: dict, wall: float, shape: bool = False) -> tuple[float, str]:
    """Bound / wall (``bound_seconds``)."""
    t, what = bound_seconds(c, probe_, shape)
    return t / wall, what


#: aten ops that are BLAS / LAPACK calls; everything else a method runs is bookkeeping (copies, casts,
#: element-wise updates, norms, indexing, the interpreter).
KERNEL_OPS = frozenset({
    "aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm", "aten::mv", "aten::addmv",
    "aten::addmm_", "aten::baddbmm_", "aten::addbmm_", "aten::addmv_",  # in place (beta = 1): the same calls
    "aten::dot", "aten::vdot", "aten::linalg_cholesky_ex", "aten::linalg_solve_triangular",
    "aten::cholesky_solve", "aten::_cholesky_solve_helper", "aten::triangular_solve", "aten::_linalg_eigh",
    "aten::linalg_eigh", "aten::_linalg_solve_ex", "aten::linalg_lu_factor_ex", "aten::linalg_lu_solve",
})


def kernel_profile(f) -> dict:
    """One extra, untimed call of ``f`` under ``torch.profiler``: ``kernel_s`` = the self time of the BLAS /
    LAPACK ops (``KERNEL_OPS``), ``kernel_share`` = that over the profiled call's wall time (the rest is
    bookkeeping), ``profiled_wall_s``, ``other_ops_s`` the self time of all other ops (the remainder of the
    wall time is the interpreter between ops); ``top_ops`` the five largest self times. The profiler sees
    only this thread: the single-threaded products of block-parallel reads (``ThreadShares.map``, behind
    ``_common.on_threads`` and the solvers' ``read_twice``) count as kernels at their threads'
    wall time over the thread count (``on_threads`` in ``top_ops``)."""
    from torch.profiler import ProfilerActivity, profile

    from inflbench.solvers.common import ThreadShares

    real, worker = ThreadShares.map, []

    def timed(self, fn, parts):
        def part(p):
            t0 = time.perf_counter()
            out = fn(p)
            worker.append(time.perf_counter() - t0)
            return out
        return real(self, part, parts)

    ThreadShares.map = timed
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            f()
            wall = time.perf_counter() - t0
    finally:
        ThreadShares.map = real
    by_op = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}  # one entry per op name
    if worker:
        by_op["on_threads"] = sum(worker) / torch.get_num_threads()
    kernel = sum(t for k, t in by_op.items() if k in KERNEL_OPS or k == "on_threads")
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:5]
    return {"kernel_s": kernel, "kernel_share": kernel / wall, "profiled_wall_s": wall,
            "other_ops_s": sum(by_op.values()) - kernel,
            "top_ops": " ".join(f"{k.removeprefix('aten::')}={t:.3g}" for k, t in top)}


def rankdata(x: np.ndarray) -> np.ndarray:
    """Column-wise ranks (ties broken by order; scores are continuous)."""
    order = np.argsort(x, axis=0, kind="stable")
    ranks = np.empty_like(order, dtype=np.float64)
    np.put_along_axis(ranks, order, np.arange(x.shape[0], dtype=np.float64)[:, None].repeat(x.shape[1], 1), axis=0)
    return ranks


def spearman_cols(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean(0)
    rb -= rb.mean(0)
    den = np.sqrt((ra**2).sum(0) * (rb**2).sum(0))
    c = np.where(den > 0, (ra * rb).sum(0) / np.where(den > 0, den, 1), np.nan)
    return float(np.nanmean(c))


def top_overlap(a: np.ndarray, b: np.ndarray, frac: float = 0.2) -> float:
    k = max(1, int(round(frac * a.shape[0])))
    ta = np.argsort(-a, axis=0)[:k]
    tb = np.argsort(-b, axis=0)[:k]
    return float(np.mean([len(set(ta[:, j]) & set(tb[:, j])) / k for j in range(a.shape[1])]))


def agreement(s: np.ndarray, ref: np.ndarray) -> dict:
    if not np.isfinite(s).all():
        return {"spearman": float("nan"), "top20": float("nan"), "rel_err": float("nan")}
    return {
        "spearman": spearman_cols(s, ref),
        "top20": top_overlap(s, ref),
        "rel_err": float(np.abs(s - ref).max() / max(np.abs(ref).max(), 1e-300)),
    }


def load_grads(path: Path):
    from inflbench.artifacts import load_gradients

    tr = load_gradients(path / "train.safetensors")
    te = load_gradients(path / "val.safetensors")
    common = [k for k in tr if k in te]
    return {k: tr[k] for k in common}, {k: te[k] for k in common}


def main(argv=None) -> int:
    from inflbench.methods._stats import block_stats

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-train", type=int, default=900)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--layers", type=int, default=24, help="RoBERTa-large layers of the synthetic store")
    ap.add_argument("--quick", action="store_true", help="4 layers, n_train=200, n_test=20 (a smoke run)")
    ap.add_argument("--grads", type=Path, default=None, help="directory with train.safetensors and val.safetensors")
    ap.add_argument("--methods", nargs="*", default=None, help="config labels to run (default: all)")
    ap.add_argument("--settings", nargs="*", default=["P", "Q"], choices=["P", "Q"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "methods.csv")
    ap.add_argument("--append", action="store_true", help="append to the CSV instead of overwriting")
    ap.add_argument("--repeat", type=int, default=1, help="run each method this many times and keep the fastest")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (torch and BLAS)")
    ap.add_argument("--no-profile", dest="profile", action="store_false",
                    help="skip the extra profiled call per row (kernel_s, kernel_share, roofline_kernels)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:  # pragma: no cover
            pass

    if args.grads is not None:
        train, test = load_grads(args.grads)
        source = f"real:{args.grads}"
    else:
        layers = 4 if args.quick else args.layers
        n_tr, n_te = (200, 20) if args.quick else (args.n_train, args.n_test)
        t0 = time.perf_counter()
        train, test, _, _ = synthetic_grads(roberta_lora_shapes(layers=layers), n_tr, n_te, seed=args.seed)
        print(f"generated synthetic gradients in {time.perf_counter() - t0:.1f}s", flush=True)
        source = f"synthetic:roberta-large-lora-{layers}L"
    n = next(iter(train.values())).shape[0]
    dims = {k: v[0].numel() for k, v in train.items()}
    shapes = {k: tuple(v.shape[1:]) for k, v in train.items()}
    d = sum(dims.values())
    print(f"{source}: n_train={n} n_test={next(iter(test.values())).shape[0]} blocks={len(train)} d={d} "
          f"threads={torch.get_num_threads()}", flush=True)
    probes = [{**probe(), **shape_probe(train, test)}]
    print("probe", probes[-1], flush=True)
    from inflbench.methods._common import sq_norms

    train_sq = {k: sq_norms(v) for k, v in train.items()}  # what the gradient store holds beside the blocks

    before = probe(reps=2)
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        stats = block_stats(train)
        stats_wall, stats_cpu = time.perf_counter() - t0, time.process_time() - c0
    stats_rounds = [(stats_wall, stats_cpu, paired_rates(before, probe(reps=2)))]
    grams = sum(min(n, db) ** 2 * max(n, db) for db in dims.values())  # all of it float64 Gram formation
    stats_row = {"config": "block_stats", "method": "block_stats", "setting": "P,Q", "wall_s": stats_wall,
                 "cpu_s": stats_cpu, "peak_mem_mb": mem.mb, "loadavg_1m": os.getloadavg()[0],
                 "flops64": grams, "flops32": 0.0, "flops_syrk64": grams,
                 "bytes": 4 * n * d + sum(8 * min(n, db) ** 2 for db in dims.values()), "rounds": stats_rounds}
    print(f"block_stats {stats_wall:.2f}s {mem.mb:.0f}MB", flush=True)

    configs = [c for c in CONFIGS if args.methods is None or c[0] in args.methods or c[0] in REFS]
    rows = [stats_row]
    for setting in args.settings:
        target = test if setting == "Q" else {k: v.mean(0, keepdim=True) for k, v in test.items()}
        m = next(iter(target.values())).shape[0]
        refs, results = {}, []
        order = sorted(configs, key=lambda c: c[0] not in REFS)  # references first
        for label, method, params, use_stats in order:
            def run(method=method, params=params, use_stats=use_stats, label=label):
                return compute_influence(method, train, target, block_stats=stats if use_stats else None,
                                         train_sq=train_sq if label.endswith("+norms") else None, **params)

            walls, cpus, local = [], [], []
            for _ in range(max(1, args.repeat)):
                gc.collect()
                load = os.getloadavg()[0]
                before = probe(reps=2)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with PeakRSS() as mem:
                        t0, c0 = time.perf_counter(), time.process_time()
                        res = run()
                        walls.append(time.perf_counter() - t0)
                        cpus.append(time.process_time() - c0)
                local.append(paired_rates(before, probe(reps=2)))
            scores = res.total().numpy()
            meta = res.meta
            del res
            prof = {}
            if args.profile:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    prof = kernel_profile(run)
            if label in REFS:
                refs[label] = scores
            row = {"config": label, "method": method, "setting": setting, "wall_s": min(walls), "cpu_s": min(cpus),
                   "peak_mem_mb": mem.mb, "loadavg_1m": load, **prof, **cost(method, params, use_stats, n, m, dims, shapes, meta)}
            row["scores"] = scores
            row["rounds"] = list(zip(walls, cpus, local))
            row["diverged"] = bool(meta.get("diverged", False))
            row["meta"] = ";".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in meta.items()
                                   if not k.startswith("param.") and k not in ("method", "diverged"))
            row["params"] = ";".join(f"{k}={v}" for k, v in params.items())
            results.append(row)
            print(f"{setting} {label:40s} {min(walls):8.3f}s {mem.mb:8.0f}MB load={load:.1f} "
                  f"kernels={prof.get('kernel_share', float('nan')):.2f} {prof.get('top_ops', '')}", flush=True)
        for row in results:
            scores = row.pop("scores")
            for ref in REFS:
                row.update({f"{k}_vs_{ref.split('+')[0]}": v for k, v in agreement(scores, refs[ref]).items()})
        rows.extend(sorted(results, key=lambda r: [c[0] for c in configs].index(r["config"])))
        probes.append({**probe(), **shape_probe(train, test)})
        print("probe", probes[-1], flush=True)
    best = {k: max(p[k] for p in probes) for k in probes[0]}
    single = torch.get_num_threads() == 1  # then CPU times on both sides (see _timed)
    for r in rows:
        wall = r["cpu_s"] if single else r["wall_s"]
        r["roofline"], r["bound"] = roofline(r, best, wall)
        r["roofline_shape"] = roofline(r, best, wall, shape=True)[0]
        # each timed call against the square rates probed around it, the median over the repeats; the
        # host's drift (other jobs on the shared cores) then cancels, where the column above does not
        rounds = r.pop("rounds")
        r["roofline_paired"] = float(np.median([roofline(r, {**best, **rates}, c if single else w)[0]
                                                for w, c, rates in rounds]))
        r["host_factor"] = float(np.median([rates["gemm_f32_gflops"] for _, _, rates in rounds])) / best["gemm_f32_gflops"]
        r["roofline_cap"] = bound_seconds(r, best)[0] / bound_seconds(r, best, shape=True)[0]
        if r.get("kernel_s"):  # the bound over the BLAS / LAPACK time alone: the rate the kernels reached
            r["roofline_kernels"] = roofline(r, best, r["kernel_s"])[0]
        r.update({"source": source, "n_train": n, "n_test": test[next(iter(test))].shape[0], "d": d,
                  "threads": torch.get_num_threads(), **best,
                  "machine": f"{platform.processor() or platform.machine()} x{os.cpu_count()}"})
    fields = ["config", "method", "setting", "params", "wall_s", "cpu_s", "peak_mem_mb", "flops32", "flops64", "bytes",
              "roofline", "bound", "roofline_shape", "roofline_cap", "roofline_paired", "host_factor", "kernel_s", "kernel_share", "roofline_kernels", "profiled_wall_s",
              "other_ops_s", "top_ops", "spearman_vs_exact_block", "top20_vs_exact_block", "rel_err_vs_exact_block",
              "spearman_vs_exact_joint", "top20_vs_exact_joint", "rel_err_vs_exact_joint", "diverged", "meta",
              "source", "n_train", "n_test", "d", "threads", "gemm_f32_gflops", "gemm_f64_gflops", "read_gbs",
              "gemm_f32_shape_gflops", "read_blocks_gbs", *KERNEL_RATES.values(), "loadavg_1m", "machine"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if args.append and args.out.exists() else "w"
    with open(args.out, mode, newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if mode == "w":
            w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    print(f"wrote {args.out}  (probe max: {best})")
    for r in rows:
        print(f"{r['setting']:3s} {r['config']:40s} {r['wall_s']:8.3f}s  roofline={r['roofline']:.2f} ({r['bound']}) "
              f"paired={r['roofline_paired']:.2f} host={r['host_factor']:.2f} "
              f"shape={r['roofline_shape']:.2f} cap={r['roofline_cap']:.2f} kernels={r.get('roofline_kernels', float('nan')):.2f}"
              f"x{r.get('kernel_share', float('nan')):.2f}  "
              f"rho_blk={r.get('spearman_vs_exact_block', float('nan')):.4f} rho_jnt={r.get('spearman_vs_exact_joint', float('nan')):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
