"""What a GEMM of the benchmark's own block shapes reaches, against the square-GEMM probe of the roofline.

The Q roofline of benchmarks/bench_methods.py divides by the float32 rate of a 2048² GEMM. TracIn's Q work
is 96 products (900 x 4096) @ (4096 x 100) (RoBERTa-large LoRA blocks, n_train 900, n_test 100). This probe
times those products alone in three layouts, and TracIn through ``compute_influence`` on the same tensors,
in one run (best of ``--repeat``), and writes ``benchmarks/out/gemm_shapes.csv``. It also times the dense
float64 factorisation the exact methods run per block (``s = n_train``): LAPACK's Cholesky, the blocked one
they use (``solvers.direct.cholesky``) and an ``s x s`` float64 GEMM, each as a share of the square float64
GEMM rate (rows ``cholesky ...``; flops ``s^3/3`` for a factorisation, ``2 s^3`` for the GEMM):

    python benchmarks/bench_gemm_shapes.py
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import torch

from inflbench.methods import compute_influence

ROOT = Path(__file__).resolve().parents[1]


def best(f, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-train", type=int, default=900)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--blocks", type=int, default=96)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "gemm_shapes.csv")
    args = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    train = {f"b{i}": torch.randn(args.n_train, args.dim, generator=g) for i in range(args.blocks)}
    test = {k: torch.randn(args.n_test, args.dim, generator=g) for k in train}
    pairs = [(train[k], test[k]) for k in train]
    square = torch.randn(2048, 2048, generator=g)
    square @ square
    layouts = {
        "bmm (n x d) @ (d x m), as tracin": lambda: [torch.bmm(a[None], b[None].transpose(1, 2)) for a, b in pairs],
        "mm (n x d) @ (m x d)^T": lambda: [a @ b.T for a, b in pairs],
        "mm ((m x d) @ (n x d)^T)^T": lambda: [(b @ a.T).T for a, b in pairs],
        "tracin (compute_influence)": lambda: compute_influence("tracin", train, test),
    }
    load = os.getloadavg()[0]
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
    from inflbench.solvers.direct import cholesky

    sq64 = square[:1536, :1536].double()
    probe64 = 2 * 1536**3 / best(lambda: sq64 @ sq64, args.repeat) / 1e9
    s = args.n_train
    x = torch.randn(s, s + 16, generator=g, dtype=torch.float64)
    spd = x @ x.T + torch.eye(s, dtype=torch.float64)
    for name, f, fl in (("cholesky, LAPACK potrf (s x s, float64)", lambda: torch.linalg.cholesky(spd), s**3 / 3),
                        ("cholesky, blocked as the exact methods (float64)", lambda: cholesky(spd), s**3 / 3),
                        ("gemm s x s (float64)", lambda: spd @ spd, 2 * s**3)):
        f()
        wall = best(f, args.repeat)
        rows.append({"kernel": name, "wall_s": round(wall, 5), "gflops": round(fl / wall / 1e9, 1),
                     "fraction_of_square_gemm": round(fl / wall / 1e9 / probe64, 3)})
    for r in rows:
        r.update({"square_gemm_gflops": round(probe64 if "float64" in r["kernel"] else probe, 1),
                  "n_train": args.n_train, "n_test": args.n_test, "blocks": args.blocks, "dim": args.dim,
                  "threads": torch.get_num_threads(), "loadavg_1m": load})
        print(f"{r['kernel']:48s} {r['wall_s']:8.4f}s {r['gflops']:7.1f} GFLOP/s  {r['fraction_of_square_gemm']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out} (square GEMM {probe:.1f} GFLOP/s, load {load:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
