"""Helpers shared by the solvers: a symmetric Gram product, a cheap eigenvalue bound, thread control."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

#: Loops whose single operations are smaller than this many flops run single-threaded:
#: on a busy machine, per-op thread synchronisation costs more than it saves.
_SMALL_OP_FLOPS = 2e7


#: ... unless they stream at least this many bytes (memory-bound products gain from every core).
_SMALL_OP_BYTES = 2 << 20


@contextmanager
def small_op_threads(flops_per_op: float, bytes_per_op: float = 0.0) -> Iterator[None]:
    """Temporarily use one intra-op thread for loops of small operations."""
    if flops_per_op >= _SMALL_OP_FLOPS or bytes_per_op >= _SMALL_OP_BYTES or torch.get_num_threads() == 1:
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


#: Products with at most this many right-hand sides are reads of their matrix (GEMVs): two threads that each
#: stream their own share read faster than both threads on every GEMV (docs/methods.md, "Block-parallel
#: reads"; measured no faster from 4 right-hand sides on).
THIN_ROWS = 1


class ThreadShares:
    """A pool of ``workers`` threads for products that read separate shares of memory. While :meth:`map` runs,
    torch's intra-op threads are set to 1 (a process-wide setting, restored after), so each share is read
    single-threaded. A context manager: the pool lives until exit (a loop of many small calls pays for the
    threads once)."""

    def __init__(self, workers: int):
        self.workers = int(workers)
        self._pool: ThreadPoolExecutor | None = None

    def map(self, fn: Callable, parts: Sequence) -> list:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers)
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return list(self._pool.map(fn, parts))
        finally:
            torch.set_num_threads(prev)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "ThreadShares":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def thin_shares(rows: float) -> Iterator[ThreadShares | None]:
    """A :class:`ThreadShares` over torch's intra-op threads when products with ``rows`` right-hand sides are
    reads (``rows <= THIN_ROWS``) and there are two or more threads, else ``None`` (one product on all
    threads). Its pool starts at the first use, which a block outside host memory never makes."""
    threads = torch.get_num_threads()
    if rows > THIN_ROWS or threads < 2:
        yield None
        return
    with ThreadShares(threads) as shares:
        yield shares


def even_slices(length: int, parts: int) -> list[slice]:
    """``range(length)`` as at most ``parts`` contiguous, non-empty slices of about equal size."""
    edges = [round(i * length / parts) for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(edges, edges[1:]) if a < b]


def read_twice(X: Tensor, A: Tensor, fn: Callable[[Tensor, slice], Tensor], shares: ThreadShares | None = None) -> Tensor:
    """``X fn(Aᵀ X, cols)ᵀ`` (n x k) for ``X`` (n x d), ``A`` (n x a) and ``fn`` acting column by column
    (``fn(P, cols)``, ``P = Aᵀ X[:, cols]`` (a x |cols|), returns (k x |cols|)): two reads of ``X``. With
    ``shares`` each worker takes one contiguous share of the columns through both reads, single-threaded, and
    the shares' products are summed (only the summation order differs)."""
    if shares is None or shares.workers < 2 or X.device.type != "cpu":
        return X @ fn(A.T @ X, slice(None)).T

    def part(cols: slice) -> Tensor:
        Xc = X[:, cols]
        return Xc @ fn(A.T @ Xc, cols).T

    outs = shares.map(part, even_slices(X.shape[1], shares.workers))
    total = outs[0]
    for o in outs[1:]:
        total = total + o
    return total


#: Row tiles of :func:`sym_gram`: only the k(k+1)/2 lower tiles of ``X X^T`` are multiplied.
_GRAM_TILES = 4


def gram_tile_edges(p: int, k: int = _GRAM_TILES) -> list[int]:
    """Row boundaries of the ``k`` tiles :func:`sym_gram` splits ``p`` rows into."""
    return [round(i * p / k) for i in range(k + 1)]


def lower_gram_(K: Tensor, X: Tensor, alpha: float = 1.0, *, accumulate: bool = False, tiles: int = _GRAM_TILES) -> Tensor:
    """Write (``accumulate``: add) ``alpha * X X^T`` of a 2-D ``X`` (p x q) into ``K`` (p x p) on and below the
    diagonal: the products of :func:`sym_gram`'s lower row tiles, each straight into ``K``. Entries above the
    diagonal tiles are not touched (for consumers that read the lower triangle only, as ``potrf``). Returns
    ``K``."""
    edges = gram_tile_edges(X.shape[0], tiles) if X.shape[0] >= 256 else [0, X.shape[0]]
    for a, b in zip(edges, edges[1:]):
        dst, left, right = K[a:b, :b], X[a:b], X[:b].T
        if accumulate:
            dst.addmm_(left, right, alpha=alpha)
        elif alpha == 1.0:
            torch.mm(left, right, out=dst)
        else:
            torch.addmm(dst, left, right, beta=0.0, alpha=alpha, out=dst)
    return K


def sym_gram(X: Tensor, alpha: float = 1.0) -> Tensor:
    """``alpha * X X^T`` for ``(..., p, q)``, exactly symmetric.

    For ``p >= 256`` the rows are split into 4 tiles and only the lower
    block-triangle is computed (10 of 16 tile products, ~0.65x the time of a
    full matmul on this project's CPUs; measured faster than BLAS ``syrk`` from
    OpenBLAS, which lacks AVX-512 kernels), then mirrored.
    """
    p = X.shape[-2]
    if p < 256 or X.requires_grad:
        K = X @ X.transpose(-1, -2)
        K = (K + K.transpose(-1, -2)) * (0.5 * alpha)
        return K
    k = _GRAM_TILES
    edges = gram_tile_edges(p, k)
    K = torch.empty(*X.shape[:-2], p, p, dtype=X.dtype, device=X.device)
    for i in range(k):
        a, b = edges[i], edges[i + 1]
        blk = X[..., a:b, :] @ X[..., :b, :].transpose(-1, -2)  # rows a:b against rows 0:b
        if alpha != 1.0:
            blk = blk * alpha
        K[..., a:b, :b] = blk
        K[..., :a, a:b] = blk[..., :, :a].transpose(-1, -2)
    # the diagonal tiles are computed in full; make them exactly symmetric
    for i in range(k):
        a, b = edges[i], edges[i + 1]
        D = K[..., a:b, a:b]
        K[..., a:b, a:b] = (D + D.transpose(-1, -2)) * 0.5
    return K


def eye_like(A: Tensor) -> Tensor:
    d = A.shape[-1]
    return torch.eye(d, dtype=A.dtype, device=A.device).expand(A.shape)


def batch_scalar(x: Tensor | float, A: Tensor) -> Tensor:
    """Scalar or per-batch value -> tensor broadcastable against ``A`` (..., 1, 1)."""
    t = torch.as_tensor(x, dtype=A.dtype, device=A.device)
    return t.reshape(t.shape + (1, 1)) if t.dim() > 0 else t


def lambda_max_bound(A: Tensor) -> Tensor:
    """Cheap guaranteed upper bound of ``lambda_max`` of symmetric PSD ``A`` (..., d, d).

    ``min(||A||_F, max_i sum_j |A_ij|)``; both are norms that dominate the
    spectral radius. For a decaying spectrum the Frobenius norm is much tighter
    than the trace. Returns shape ``A.shape[:-2]``.
    """
    fro = torch.linalg.matrix_norm(A, ord="fro")
    rowsum = A.abs().sum(-1).amax(-1)
    return torch.minimum(fro, rowsum)


def col_sq_norms(x: Tensor) -> Tensor:
    """Squared column norms in the input precision (at least float32), as float64. A square and a sum over
    rows: 12x faster than ``vector_norm(dim=0)``, whose strided reduction crawls (0.96 vs 12 ms on 900 x 4096),
    for one block-sized temporary."""
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    return x.square().sum(0).to(torch.float64)
