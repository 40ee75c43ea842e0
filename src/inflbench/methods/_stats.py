"""Block statistics: the Gram of each block's smaller side and per-sample squared norms, computed once
per gradient store and shared by the curvature methods (exact_block, exact_joint, lissa, hyperinf_fim,
rrinf).

Per block ``b`` with train gradients ``X_b`` (n x d_b): side ``"n"`` (``n <= d_b``) stores
``K_b = X_b X_bᵀ`` (n x n), side ``"d"`` stores ``X_bᵀ X_b`` (d_b x d_b), unnormalised, float64.
Float64 products are accumulated from float32 chunks (columns for side n, rows for side d) of at most
``CHUNK_BYTES``, so no float64 copy of a whole block is ever made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor

from ..solvers import lower_gram_, sym_gram
from ._common import shape_of, sq_norms

#: Max bytes of one float64 chunk cast from the (float32) gradients for a Gram product.
CHUNK_BYTES = 64 << 20

#: ... for a product with few right-hand sides (kept cache-sized: the cast costs more than the product).
THIN_CHUNK_BYTES = 4 << 20

def side_of(n: int, d: int) -> str:
    """The smaller side of an (n, d) block: ``"n"`` (Gram ``X Xᵀ``) when ``n <= d``, else ``"d"``."""
    return "n" if n <= d else "d"


def _step(rows: int, itemsize: int, chunk_bytes: int) -> int:
    return max(1, chunk_bytes // max(1, rows * itemsize))


def chunked_gram(X: Tensor, side: str, dtype: torch.dtype = torch.float64, chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """``X Xᵀ`` (side n) or ``Xᵀ X`` (side d) of a 2-D ``X`` in ``dtype``, accumulated over chunks.

    If ``X`` already has ``dtype`` there is no cast and one product; otherwise chunks of at most
    ``chunk_bytes`` (in ``dtype``) are cast one at a time.
    """
    if X.dtype == dtype:
        return sym_gram(X) if side == "n" else sym_gram(X.T)
    n, d = X.shape
    itemsize = torch.finfo(dtype).bits // 8
    out = None
    if side == "n":
        return gram_cross(X, None, dtype=dtype, chunk_bytes=chunk_bytes)[0]
    else:
        step = _step(d, itemsize, chunk_bytes)
        for r in range(0, n, step):
            part = sym_gram(X[r : r + step].to(dtype).T)
            out = part if out is None else out.add_(part)
    return out


def gram_cross(X: Tensor, T: Tensor | None, dtype: torch.dtype = torch.float64, chunk_bytes: int = CHUNK_BYTES,
               *, lower: bool = False, into: tuple[Tensor, Tensor] | None = None, alpha: float = 1.0
               ) -> tuple[Tensor, Tensor | None]:
    """``(X Xᵀ, X Tᵀ)`` in ``dtype`` (the second ``None`` without ``T``) from column chunks of ``X`` cast to
    ``dtype`` (at most ``chunk_bytes`` each): one cast of each chunk serves both products. ``lower``: the
    Gram is valid on and below the diagonal only (no mirroring; for a Cholesky solve). ``into``: ``(K, C)``
    to which ``alpha`` times both products are added (the Gram's lower triangle only), returned."""
    n, d = X.shape
    step = _step(n, torch.finfo(dtype).bits // 8, chunk_bytes)
    if into is not None:
        K, C = into
    else:
        K = torch.empty(n, n, dtype=dtype, device=X.device) if lower else None
        C = None
    for c in range(0, d, step):
        Y = X[:, c : c + step].to(dtype)
        if into is not None or lower:
            lower_gram_(K, Y, alpha, accumulate=into is not None or c > 0)
        else:
            part = sym_gram(Y)
            K = part if K is None else K.add_(part)
        if T is None:
            continue
        Tc = T[:, c : c + step].to(dtype).T
        if into is not None:
            C.addmm_(Y, Tc, alpha=alpha)
        else:
            C = Y @ Tc if C is None else C.addmm_(Y, Tc)
    return K, C


def chunked_cross(X: Tensor, T: Tensor, dtype: torch.dtype = torch.float64, chunk_bytes: int = THIN_CHUNK_BYTES) -> Tensor:
    """``X Tᵀ`` (n x m) in ``dtype`` from column chunks (no whole-block cast)."""
    if X.dtype == dtype and T.dtype == dtype:
        return X @ T.T
    n, d = X.shape
    step = _step(n + T.shape[0], torch.finfo(dtype).bits // 8, chunk_bytes)
    out = None
    for c in range(0, d, step):
        part = X[:, c : c + step].to(dtype) @ T[:, c : c + step].to(dtype).T
        out = part if out is None else out.add_(part)
    return out


def chunked_apply(X: Tensor, W: Tensor, chunk_bytes: int = THIN_CHUNK_BYTES) -> Tensor:
    """``X W`` (n x m) in ``W.dtype`` from row chunks of ``X`` (no whole-block cast)."""
    if X.dtype == W.dtype:
        return X @ W
    n, d = X.shape
    step = _step(d, torch.finfo(W.dtype).bits // 8, chunk_bytes)
    return torch.cat([X[r : r + step].to(W.dtype) @ W for r in range(0, n, step)])


def flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


@dataclass
class BlockStats:
    """Shared statistics of one train-gradient store; Grams fetched per block (``get``), possibly lazily."""

    n: int
    shapes: dict[str, tuple]
    train_sq: dict[str, Tensor]
    get: Callable[[str], Tensor]

    def side(self, k: str) -> str:
        return side_of(self.n, math.prod(self.shapes[k]))

    def gram(self, k: str) -> Tensor:
        return self.get(k)

    def check(self, train: Mapping[str, Tensor]) -> None:
        """Raise ``ValueError`` unless these statistics belong to ``train`` (blocks, n, shapes)."""
        n = shape_of(train, next(iter(train)))[0]
        missing = [k for k in train if k not in self.shapes]
        bad = [k for k in train if k in self.shapes and tuple(self.shapes[k]) != shape_of(train, k)[1:]]
        if n != self.n or missing or bad:
            raise ValueError(
                f"block statistics do not match the train gradients (n {self.n} vs {n}; "
                f"missing blocks {missing[:3]}; shape mismatch {bad[:3]})"
            )


def block_stats(train: Mapping[str, Tensor], *, chunk_bytes: int = CHUNK_BYTES) -> BlockStats:
    """Compute the statistics of ``train`` (block -> (n, *shape)) in memory."""
    n = next(iter(train.values())).shape[0]
    grams, sq = {}, {}
    for k, v in train.items():
        X = flat(v)
        G = chunked_gram(X, side_of(n, X.shape[1]), chunk_bytes=chunk_bytes)
        grams[k] = G
        sq[k] = G.diagonal().clone() if side_of(n, X.shape[1]) == "n" else sq_norms(X)
    return BlockStats(n, {k: tuple(v.shape[1:]) for k, v in train.items()}, sq, grams.__getitem__)


def iter_store_stats(store, chunk_bytes: int | None = None, device: str | torch.device = "cpu"
                     ) -> Iterator[tuple[str, Tensor, Tensor]]:
    """``(block, Gram, squared norms)`` of each block of a gradient store (:class:`inflbench.store.TensorStore`),
    one block at a time, the Gram accumulated from row ranges read from the file: peak one Gram plus two row
    chunks of at most ``chunk_bytes`` (in float64) and their float64 casts. A block that fits one chunk is
    read whole (the same products as :func:`block_stats`); a larger one on side d takes the same row chunks as
    :func:`block_stats` (equal bit for bit on float32 and half-precision stores). ``device``: where the
    products run; each row range is read into host memory and copied there, the results stay there."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    device = torch.device(device)

    def read(k: str, *rows: int) -> Tensor:
        return flat(store.read(k, *rows)).to(device)

    for k in store.names:
        shape = store.shape(k)
        n, d = shape[0], math.prod(shape[1:])
        side = side_of(n, d)
        if n * d * 8 <= chunk_bytes:
            X = read(k)
            G = chunked_gram(X, side, chunk_bytes=chunk_bytes)
            yield k, G, (G.diagonal().clone() if side == "n" else sq_norms(X))
            del X, G
            continue
        step = _step(d, 8, chunk_bytes)  # the row chunks of chunked_gram's side d
        starts = list(range(0, n, step))
        if side == "d":
            G, sq = None, []
            for r in starts:
                X = read(k, r, r + step)
                part = sym_gram(X.to(torch.float64).T)
                G = part if G is None else G.add_(part)
                sq.append(sq_norms(X))
            yield k, G, torch.cat(sq)
            del G
            continue
        G = torch.empty(n, n, dtype=torch.float64, device=device)  # side n: Xi Xjᵀ over pairs of row chunks
        for i in starts:
            Xi = read(k, i, i + step)
            G[i : i + step, i : i + step] = chunked_gram(Xi, "n", chunk_bytes=chunk_bytes)
            for j in starts:
                if j > i:
                    part = chunked_cross(Xi, read(k, j, j + step))
                    G[i : i + step, j : j + step] = part
                    G[j : j + step, i : i + step] = part.T
            del Xi
        yield k, G, G.diagonal().clone()
        del G


def has_gram(data, k: str, side: str) -> bool:
    """Whether the shared statistics hold block ``k``'s Gram on ``side``."""
    return data.stats is not None and data.stats.side(k) == side


def gram_and_cross(data, k: str, dtype: torch.dtype = torch.float64, *, copy: bool = True, lower: bool = False,
                   into: tuple[Tensor, Tensor] | None = None, alpha: float = 1.0) -> tuple[Tensor, Tensor]:
    """Block ``k``'s ``n x n`` Gram in ``dtype`` (as :func:`gram_of`) and ``X Tᵀ`` in float64. A float32 block
    without shared statistics and a float64 Gram takes one float64 cast of each chunk for both. ``lower``:
    a Gram computed here may be valid on and below the diagonal only (for a Cholesky solve); shared
    statistics come whole. ``into``: ``(K, C)`` to which ``alpha`` times both are added (lower triangle of the
    Gram at least), returned; a Gram computed here then goes straight into ``K``."""
    X, T = flat(data.train[k]), flat(data.test[k])
    shared = has_gram(data, k, "n")
    if not shared and dtype == torch.float64 and X.dtype != torch.float64:
        return gram_cross(X, T, lower=lower, into=into, alpha=alpha)
    C = chunked_cross(X, T)
    K = None if into is None else into[0]
    if not shared and X.dtype == dtype and (lower or K is not None) and (K is None or K.dtype == dtype):
        # no cast: the lower row tiles straight from the block (into K when given)
        if K is None:
            return lower_gram_(torch.empty(X.shape[0], X.shape[0], dtype=dtype, device=X.device), X), C
        return lower_gram_(K, X, alpha, accumulate=True), into[1].add_(C, alpha=alpha)
    G = gram_of(data, k, "n", dtype, copy=copy and into is None)
    if into is None:
        return G, C
    return into[0].add_(G, alpha=alpha), into[1].add_(C, alpha=alpha)


def gram_of(data, k: str, side: str, dtype: torch.dtype = torch.float64, *, copy: bool = True) -> Tensor:
    """The unnormalised Gram of block ``k`` on ``side`` in ``dtype``: shared statistics when they
    hold that side, else computed (float64 accumulated from chunks). ``copy=False``: the shared
    statistics themselves where the dtype matches (for callers that only read it)."""
    if has_gram(data, k, side):
        return data.stats.gram(k).to(dtype, copy=copy)
    return chunked_gram(flat(data.train[k]), side, dtype)


#: Max bytes of Gram matrices stacked for one batched iteration.
BATCH_BYTES = 256 << 20

#: Grams this large are big enough for full-speed unbatched products.
ALONE_BYTES = 1 << 20


def stacked_grams(data, items: Iterable[tuple[str, str]], dtype: torch.dtype, max_bytes: int = BATCH_BYTES):
    """For ``(block, side)`` pairs yield ``(names, sides, G, V)`` batches of equal-size blocks:
    ``G`` (B, s, s) the Gram on that side divided by n (``K_b/n`` or the Fisher ``G_b``), ``V`` (B, s, m)
    the right-hand side ``X_b T_bᵀ`` (side n) or ``T_bᵀ`` (side d). Batches hold at most ``max_bytes``;
    a Gram of at least ``ALONE_BYTES`` comes alone (a view, no stacking copy)."""
    n, m = data.n, data.m
    itemsize = torch.finfo(dtype).bits // 8
    pending: dict[int, list] = {}

    def emit(size: int):
        batch = pending.pop(size)
        return ([b[0] for b in batch], [b[1] for b in batch],
                torch.stack([b[2] for b in batch]), torch.stack([b[3] for b in batch]))

    for k, side in items:
        X, T = flat(data.train[k]).to(dtype), flat(data.test[k]).to(dtype)
        G = gram_of(data, k, side, dtype).div_(n)
        V = X @ T.T if side == "n" else T.T
        if G.numel() * itemsize >= ALONE_BYTES:
            yield [k], [side], G.unsqueeze(0), V.unsqueeze(0)
            continue
        batch = pending.setdefault(G.shape[-1], [])
        batch.append((k, side, G, V))
        if len(batch) * G.shape[-1] * (G.shape[-1] + m) * itemsize > max_bytes:
            yield emit(G.shape[-1])
    for size in list(pending):
        yield emit(size)
