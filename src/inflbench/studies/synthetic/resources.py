"""Resource declarations of the per-cell jobs (Snakemake ``resources:``), from the cell size.

Estimates are deliberately generous; they matter for SLURM packing, not for correctness.
"""

from __future__ import annotations

import math

#: Sustained float32 matmul throughput assumed per thread (GFLOP/s), conservative for a modern x86 core.
GFLOPS_PER_THREAD = 20.0


def mem_mb(d: int, n: int) -> int:
    """Peak memory: float64 + working copies of S (N x d) and about eight d x d matrices, plus the runtime."""
    bytes_needed = 12 * n * d + 64 * d * d
    return int(math.ceil(bytes_needed / 2**20)) + 800


def runtime_min(d: int, n: int, iterations: int, threads: int) -> int:
    """Wall minutes: two Schulz runs (2 d^3 products per iteration) dominate; + RRInf's per-row Python steps."""
    flops = 2 * iterations * 2 * 2 * d**3 + 4 * n * d * d
    seconds = flops / (GFLOPS_PER_THREAD * 1e9 * threads) + 2 * iterations * d * 3e-4
    return int(math.ceil(seconds / 60.0 * 2)) + 5
