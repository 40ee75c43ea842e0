"""Shared helpers: validated gradient container, damping rules, dtype choice, block grouping."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import torch
from torch import Tensor

from ..solvers.common import THIN_ROWS, ThreadShares

#: Default relative damping: lambda_b = DAMPING_FACTOR * mean_i ||g_i,b||^2 / d_b.
DAMPING_FACTOR = 0.1

#: Max bytes of one stacked chunk of equal-shape blocks (stacking copies, so keep it bounded).
GROUP_BYTES = 192 << 20

#: Blocks with more than this many train-gradient elements are processed one at a time
#: (as views, no copy): their matmuls are big enough to run at full speed unbatched.
STACK_MAX_ELEMS = 1 << 20

#: Products ``X_b T_bᵀ`` with at most this many test rows are reads of the store (GEMVs): they run one
#: block per intra-op thread, each single-threaded.
THIN_TEST_ROWS = THIN_ROWS


def shape_of(grads: Mapping[str, Tensor], k: str) -> tuple[int, ...]:
    """Shape of block ``k``; a lazy mapping (``inflbench.store.LazyTensors``) answers without reading it."""
    get = getattr(grads, "shape_of", None)
    return tuple(get(k)) if get is not None else tuple(grads[k].shape)


def dtype_of(grads: Mapping[str, Tensor], k: str) -> torch.dtype:
    get = getattr(grads, "dtype_of", None)
    return get(k) if get is not None else grads[k].dtype


class BlockList(Sequence):
    """Blocks ``names`` of a (possibly lazy) mapping as a sequence: each read when indexed, shapes from
    ``shape_of`` (solvers taking block lists never hold more than the block they use)."""

    def __init__(self, grads: Mapping[str, Tensor], names: Sequence[str]):
        self.grads, self.names = grads, list(names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return BlockList(self.grads, self.names[i])
        return self.grads[self.names[i]]

    def shape_of(self, i: int) -> tuple[int, ...]:
        return shape_of(self.grads, self.names[i])


class LazyNorms(dict):
    """``block -> (n,) float64`` squared norms, each computed on first access (one pass over that block)."""

    def __init__(self, grads: Mapping[str, Tensor], known: Mapping[str, Tensor] | None = None):
        super().__init__(known or {})
        self._grads = grads

    def __missing__(self, k: str) -> Tensor:
        v = self[k] = sq_norms(self._grads[k])
        return v


@dataclass
class GradData:
    """Validated per-sample gradients ``block -> (n, *shape)``; squared norms given (``train_sq`` / ``test_sq``,
    e.g. a gradient store's) or computed lazily, one pass over a block on first use.

    ``stats``: optional :class:`inflbench.methods._stats.BlockStats` of the train gradients
    (shared Grams and norms); methods that use Grams take them from there when present.
    """

    train: dict[str, Tensor]
    test: dict[str, Tensor]
    train_sq: dict[str, Tensor] = field(default_factory=dict)  # block -> (n,) float64
    test_sq: dict[str, Tensor] = field(default_factory=dict)  # block -> (m,) float64
    stats: object | None = None

    def __post_init__(self):
        known = {**self.train_sq, **(self.stats.train_sq if self.stats is not None else {})}
        self.train_sq = LazyNorms(self.train, known)
        self.test_sq = LazyNorms(self.test, self.test_sq)

    @property
    def names(self) -> list[str]:
        return list(self.train)

    @property
    def n(self) -> int:
        return shape_of(self.train, next(iter(self.train)))[0]

    @property
    def m(self) -> int:
        return shape_of(self.test, next(iter(self.test)))[0]

    def dim(self, k: str) -> int:
        return math.prod(shape_of(self.train, k)[1:])

    @property
    def d_total(self) -> int:
        return sum(self.dim(k) for k in self.train)

    def input_dtype(self) -> torch.dtype:
        dt = torch.float32
        for grads in (self.train, self.test):
            if any(dtype_of(grads, k) == torch.float64 for k in grads):
                dt = torch.float64
        return dt


def sq_norms(x: Tensor) -> Tensor:
    """Per-sample squared L2 norms of ``(n, *shape)`` as float64 (norm taken in float32/64).

    Non-finite when the gradients hold nan/inf (used as the finiteness check).
    """
    flat = x.reshape(x.shape[0], -1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    return torch.linalg.vector_norm(flat, dim=1).to(torch.float64) ** 2


def compute_dtype(choice: str, data: GradData) -> torch.dtype:
    """``"auto"``: float64 if any input is float64 or float32 would under/overflow, else float32."""
    from ._health import float32_unsafe_block

    if choice == "float64":
        return torch.float64
    unsafe = float32_unsafe_block(data.train_sq, data.test_sq)
    if choice == "float32":
        if unsafe:
            raise ValueError(f"parameter 'dtype': float32 cannot hold the products of block '{unsafe[0]}' (mean "
                             f"squared gradient norm {unsafe[1]:.2g}); use dtype 'auto' or 'float64'")
        return torch.float32
    dt = data.input_dtype()
    return torch.float64 if unsafe and dt == torch.float32 else dt


def _rule(mean_sq: float, d: int) -> float:
    lam = DAMPING_FACTOR * mean_sq / d
    # an all-zero block has zero scores whatever lambda is; keep lambda positive
    return lam if lam > 0 and math.isfinite(lam) else 1.0


def block_damping(damping, data: GradData) -> dict[str, float]:
    """Per-block lambda from ``None`` (default rule) / float / mapping."""
    if damping is None:
        return {k: _rule(float(data.train_sq[k].mean()), data.dim(k)) for k in data.names}
    if isinstance(damping, Mapping):
        missing = [k for k in data.names if k not in damping]
        extra = [k for k in damping if k not in data.train]
        if missing or extra:
            raise ValueError(f"parameter 'damping' mapping must cover exactly the blocks; missing {missing}, unknown {extra}")
        return {k: float(damping[k]) for k in data.names}
    return {k: float(damping) for k in data.names}


def joint_damping(damping, data: GradData) -> float | dict[str, float]:
    """One lambda for the whole model (default: the rule on the concatenated gradient)."""
    if damping is None:
        total = sum(data.train_sq[k] for k in data.names)
        return _rule(float(total.mean()), data.d_total)
    if isinstance(damping, Mapping):
        return block_damping(damping, data)
    return float(damping)


def damping_meta(lams: Mapping[str, float] | float) -> dict[str, float]:
    if isinstance(lams, Mapping):
        vals = list(lams.values())
        return {"damping_min": min(vals), "damping_max": max(vals)}
    return {"damping": float(lams)}


def groups(
    data: GradData,
    *,
    flatten: bool = True,
    names: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    max_bytes: int = GROUP_BYTES,
) -> Iterator[tuple[list[str], Tensor, Tensor]]:
    """Yield ``(names, train (B, n, D...), test (B, m, D...))`` chunks of equal-shape blocks.

    Blocks with the same parameter shape are stacked (a bounded copy, at most
    ``max_bytes`` of train gradients per chunk) so one batched matmul serves
    them all; a block larger than ``max_bytes`` comes alone as a view.
    ``flatten``: parameter dims flattened to one ``d_b`` axis.
    """
    names = list(names if names is not None else data.names)
    by_shape: dict[tuple, list[str]] = {}
    for k in names:
        by_shape.setdefault(tuple(data.train[k].shape[1:]), []).append(k)
    for shape, ks in by_shape.items():
        itemsize = (torch.finfo(dtype).bits // 8) if dtype is not None else data.train[ks[0]].element_size()
        per = max(1, data.n * math.prod(shape) * itemsize)
        step = max(1, max_bytes // per)
        if data.n * math.prod(shape) > STACK_MAX_ELEMS:
            step = 1
        for i in range(0, len(ks), step):
            chunk = ks[i : i + step]

            def prep(t: Tensor, rows: int) -> Tensor:
                t = t.reshape(rows, -1) if flatten else t
                return t.to(dtype) if dtype is not None and t.dtype != dtype else t

            if len(chunk) == 1:
                k = chunk[0]
                tr = prep(data.train[k], data.n).unsqueeze(0)
                te = prep(data.test[k], data.m).unsqueeze(0)
            else:
                tr = torch.stack([prep(data.train[k], data.n) for k in chunk])
                te = torch.stack([prep(data.test[k], data.m) for k in chunk])
            yield chunk, tr, te


def map_groups(data: GradData, fn, dtype: torch.dtype | None = None) -> Iterator[tuple[list[str], Tensor]]:
    """``(names, fn(names, train (B, n, d), test (B, m, d)))`` over the groups of :func:`groups`, in ``dtype``.

    With one test vector (``m <= THIN_TEST_ROWS``), two or more threads and gradients in host memory, the
    products are reads of the train blocks: then the blocks are split over the threads instead, each block a
    group of one and its products single-threaded (two threads streaming their own blocks read faster than
    both threads on each block)."""
    threads = torch.get_num_threads()
    if (data.m > THIN_TEST_ROWS or threads < 2 or len(data.names) < 2 or type(data.train) is not dict
            or data.train[data.names[0]].device.type != "cpu"):
        for names, tr, te in groups(data, dtype=dtype):
            yield names, fn(names, tr, te)
        return

    def one(k: str) -> Tensor:
        X, T = data.train[k].reshape(1, data.n, -1), data.test[k].reshape(1, data.m, -1)
        if dtype is not None:
            X, T = X.to(dtype), T.to(dtype)
        return fn([k], X, T)

    parts = split_evenly(data.names, [data.dim(k) for k in data.names], threads)
    done = on_threads(lambda ks: [one(k) for k in ks], parts)
    out = dict(zip(data.names, (t for part in done for t in part)))
    for k in data.names:
        yield [k], out[k]


def cross_products(data: GradData, dtype: torch.dtype | None = None) -> Iterator[tuple[list[str], Tensor]]:
    """``(names, (B, n, m) train · testᵀ)`` over groups of equal-shape blocks (:func:`map_groups`)."""
    return map_groups(data, lambda names, tr, te: torch.bmm(tr, te.transpose(1, 2)), dtype)


def split_evenly(items: Sequence, weights: Sequence[float], parts: int) -> list[list]:
    """``items`` in order as at most ``parts`` contiguous runs of about equal total weight."""
    runs = [[] for _ in range(parts)]
    total, acc = max(sum(weights), 1e-300), 0.0
    for item, w in zip(items, weights):
        runs[min(parts - 1, int(acc * parts / total))].append(item)
        acc += w
    return [r for r in runs if r]


def on_threads(fn, parts: Sequence) -> list:
    """``[fn(part) for part in parts]``, one thread per part, torch's intra-op threads set to 1 meanwhile (so
    each thread's products are single-threaded; the setting is process-wide and restored after)."""
    with ThreadShares(len(parts)) as shares:
        return shares.map(fn, parts)
