"""Random test problems M = (1/N) sum_i s_i s_i^T + lambda*I and v, as in HyperINF section 4 / appendix I."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

from inflbench.studies.synthetic.config import DISTRIBUTIONS


def cell_seed(distribution: str, d: int, n: int, seed: int) -> int:
    """A deterministic 63-bit seed per cell, so cells are independent and reproducible in any order."""
    key = f"{distribution}|{d}|{n}|{seed}".encode()
    return (zlib.crc32(key) << 31) ^ (seed * 1_000_003 + d * 7919 + n)


def sample(distribution: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Float64 entries drawn i.i.d. from one of ``DISTRIBUTIONS``."""
    family, a, b, _ = DISTRIBUTIONS[distribution]
    if family == "normal":
        return torch.randn(shape, generator=generator, dtype=torch.float64) * b + a
    return torch.rand(shape, generator=generator, dtype=torch.float64) * (b - a) + a


@dataclass
class Problem:
    """One cell's problem, all float64: S (N, d) holds the s_i as rows; M = S^T S / N + damping*I."""

    S: torch.Tensor
    v: torch.Tensor
    M: torch.Tensor
    damping: float

    @property
    def d(self) -> int:
        return self.M.shape[0]

    @property
    def n(self) -> int:
        return self.S.shape[0]


def make_problem(distribution: str, d: int, n: int, seed: int, damping: float) -> Problem:
    gen = torch.Generator().manual_seed(cell_seed(distribution, d, n, seed))
    S = sample(distribution, (n, d), gen)
    v = sample(distribution, (d,), gen)
    M = S.T @ S / n
    M.diagonal().add_(damping)
    M = (M + M.T) / 2  # exactly symmetric (Cholesky and SOR rely on it)
    return Problem(S=S, v=v, M=M, damping=damping)


def spectrum_bounds(M: torch.Tensor) -> tuple[float, float]:
    """(lambda_min, lambda_max) of a symmetric matrix, in float64 (cell metadata for the summary)."""
    eig = torch.linalg.eigvalsh(M.to(torch.float64))
    return float(eig[0]), float(eig[-1])
