"""Benchmark of the influence methods: wall time, peak memory, agreement with exact.

Writes ``benchmarks/out/methods.csv`` (one row per method configuration):

    python benchmarks/bench_methods.py --n-train 900 --n-test 100
    python benchmarks/bench_methods.py --quick
    python benchmarks/bench_methods.py --grads results/<run>/grads   # real cached gradients

Synthetic gradients use RoBERTa-large LoRA shapes (24 layers x query/value x
A (4x1024) and B (1024x4), d = 393,216) with realistic structure (latent
class structure seen through a decaying spectrum, isotropic noise floor,
log-normal per-sample norms); see ``inflbench.methods._synthetic``.

Agreement columns compare each method's scores with ``exact_block`` and
``exact_joint`` on the same data: ``spearman_*`` is the Spearman rank
correlation over training samples, averaged over test samples; ``top20_*``
is the overlap of the 20% highest-scoring (most harmful) training samples,
averaged over test samples; ``spearman_mean_*`` ranks the mean score over the
test set (the averaged-validation-loss influence used for mislabel detection).
Peak memory is the peak resident-set growth during the call (sampled every 2 ms).
``cpu_s`` is the process CPU time of the call; with ``--threads 1`` it measures
the work independently of other load on a shared machine. ``gemm_*_gflops`` and
``loadavg_1m`` record the machine's state just before each call.
Not a timed test: numbers depend on the machine and its load.
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
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from inflbench.methods import compute_influence  # noqa: E402
from synthetic_grads import roberta_lora_shapes, synthetic_grads  # noqa: E402

# (label, method, params). Defaults first, then the published-behaviour options.
CONFIGS: list[tuple[str, str, dict]] = [
    ("tracin", "tracin", {}),
    ("cosine", "cosine", {}),
    ("datainf", "datainf", {}),
    ("lissa", "lissa", {}),
    ("lissa[depth=100]", "lissa", {"depth": 100}),
    ("lissa[published]", "lissa", {"variant": "published"}),
    ("hyperinf", "hyperinf", {}),
    ("hyperinf[published]", "hyperinf", {"variant": "published"}),
    ("hyperinf_fim", "hyperinf_fim", {}),
    ("rrinf", "rrinf", {}),
    ("rrinf[lr=0.01]", "rrinf", {"lr": 0.01}),
    ("rrinf[paper:neuron,1000,published]", "rrinf", {"variant": "published", "sampling": "neuron", "iterations": 1000, "lr": 0.01}),
    ("rrinf[neuron,bs=64]", "rrinf", {"sampling": "neuron", "batch_size": 64}),
    ("rrinf[layer,published]", "rrinf", {"variant": "published"}),
    ("exact_block", "exact_block", {}),
    ("exact_joint", "exact_joint", {}),
]

# speed targets at n_train=900 / n_test=100 (seconds)
TARGETS = {
    "tracin": 0.1,
    "datainf": 0.7,
    "lissa": 3.5,
    "hyperinf": 10.0,
    "rrinf[paper:neuron,1000,published]": 14.0,
    "rrinf": 14.0,
    "exact_block": 2.5,
    "exact_joint": 2.5,
}


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
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def calibrate() -> dict:
    """Achieved GEMM throughput right now (the machine is shared; timings scale with it)."""
    a = torch.randn(900, 4096)
    b = torch.randn(100, 4096)
    a @ b.T
    t0 = time.perf_counter()
    for _ in range(5):
        a @ b.T
    f32 = 5 * 2 * 900 * 100 * 4096 / (time.perf_counter() - t0) / 1e9
    ad = a.double()
    ad @ ad[:300].T
    t0 = time.perf_counter()
    ad @ ad.T
    f64 = 2 * 900 * 900 * 4096 / (time.perf_counter() - t0) / 1e9
    return {"gemm_f32_gflops": round(f32, 1), "gemm_f64_gflops": round(f64, 1), "loadavg_1m": round(os.getloadavg()[0], 2)}


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
        return {"spearman": float("nan"), "top20": float("nan"), "spearman_mean": float("nan")}
    return {
        "spearman": spearman_cols(s, ref),
        "top20": top_overlap(s, ref),
        "spearman_mean": spearman_cols(s.mean(1, keepdims=True), ref.mean(1, keepdims=True)),
    }


def load_grads(path: Path):
    from safetensors.torch import load_file

    tr = load_file(str(path / "train.safetensors"))
    te = load_file(str(path / "val.safetensors"))
    common = [k for k in tr if k in te]
    return {k: tr[k] for k in common}, {k: te[k] for k in common}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-train", type=int, default=900)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="4 layers, n_train=200, n_test=20 (a smoke run)")
    ap.add_argument("--grads", type=Path, default=None, help="directory with train.safetensors and val.safetensors")
    ap.add_argument("--methods", nargs="*", default=None, help="config labels to run (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "methods.csv")
    ap.add_argument("--append", action="store_true", help="append to the CSV instead of overwriting")
    ap.add_argument("--repeat", type=int, default=1, help="run each method this many times and keep the fastest")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads (torch and BLAS); with 1 thread cpu_s is a load-independent measure of the work",
    )
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
        layers = 4 if args.quick else 24
        n_tr, n_te = (200, 20) if args.quick else (args.n_train, args.n_test)
        t0 = time.perf_counter()
        train, test, _, _ = synthetic_grads(roberta_lora_shapes(layers=layers), n_tr, n_te, seed=args.seed)
        print(f"generated synthetic gradients in {time.perf_counter() - t0:.1f}s", flush=True)
        source = f"synthetic:roberta-large-lora-{layers}L"
    n = next(iter(train.values())).shape[0]
    m = next(iter(test.values())).shape[0]
    d = sum(v[0].numel() for v in train.values())
    print(f"{source}: n_train={n} n_test={m} blocks={len(train)} d={d} threads={torch.get_num_threads()}", flush=True)

    configs = [c for c in CONFIGS if args.methods is None or c[0] in args.methods]
    # references first (needed for the agreement columns)
    refs = {}
    results = {}
    order = sorted(configs, key=lambda c: c[1] not in ("exact_block", "exact_joint"))
    for label, method, params in order:
        walls, cpus = [], []
        for _ in range(max(1, args.repeat)):
            gc.collect()
            cal = calibrate()
            with PeakRSS() as mem:
                t0, c0 = time.perf_counter(), time.process_time()
                res = compute_influence(method, train, test, **params)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
        wall = min(walls)
        cal["cpu_s"] = round(min(cpus), 3)
        scores = res.total().numpy()
        results[label] = (wall, mem.mb, scores, res.meta, cal)
        if label in ("exact_block", "exact_joint"):
            refs[label] = scores
        print(f"{label:40s} {wall:8.2f}s {mem.mb:8.0f}MB  {cal}", flush=True)
        del res

    if "exact_block" not in refs or "exact_joint" not in refs:
        for ref in ("exact_block", "exact_joint"):
            if ref not in refs:
                refs[ref] = compute_influence(ref, train, test).total().numpy()

    rows = []
    for label, method, params in configs:
        wall, mb, scores, meta, cal = results[label]
        ab = agreement(scores, refs["exact_block"])
        aj = agreement(scores, refs["exact_joint"])
        rows.append(
            {
                "method": method,
                "config": label,
                "params": ";".join(f"{k}={v}" for k, v in params.items()),
                "source": source,
                "n_train": n,
                "n_test": m,
                "d": d,
                "threads": torch.get_num_threads(),
                "wall_s": round(wall, 4),
                "target_s": TARGETS.get(label, "") if (n, m) == (900, 100) and args.grads is None and not args.quick else "",
                "peak_mem_mb": round(mb, 1),
                "spearman_vs_exact_block": round(ab["spearman"], 4),
                "top20_vs_exact_block": round(ab["top20"], 4),
                "spearman_mean_vs_exact_block": round(ab["spearman_mean"], 4),
                "spearman_vs_exact_joint": round(aj["spearman"], 4),
                "top20_vs_exact_joint": round(aj["top20"], 4),
                "spearman_mean_vs_exact_joint": round(aj["spearman_mean"], 4),
                "diverged": bool(meta.get("diverged", False)),
                "touched_fraction": meta.get("touched_fraction", ""),
                **cal,
                "meta": ";".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in meta.items()
                    if not k.startswith("param.") and k not in ("method", "touched_fraction", "diverged")
                ),
                "machine": f"{platform.processor() or platform.machine()} x{os.cpu_count()}",
            }
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if args.append and args.out.exists() else "w"
    with open(args.out, mode, newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        if mode == "w":
            w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out}")
    for r in rows:
        print(
            f"{r['config']:40s} {r['wall_s']:8.2f}s  rho_blk={r['spearman_vs_exact_block']:.3f} "
            f"top20_blk={r['top20_vs_exact_block']:.3f}  rho_jnt={r['spearman_vs_exact_joint']:.3f} "
            f"top20_jnt={r['top20_vs_exact_joint']:.3f}  {'DIVERGED' if r['diverged'] else ''}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
