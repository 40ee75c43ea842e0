"""Tensor stores written and read by row ranges: safetensors files laid out samples first.

The writer preallocates the whole file (header, then one contiguous ``(n, *shape)`` region per tensor, in
declaration order) and writes row ranges in place as they are computed, so a producer holds one batch at a
time. The result is an ordinary safetensors file: ``safetensors.safe_open`` reads it, and
:class:`TensorStore` reads one tensor or one row range of it without loading the file. Gradient stores and
score files both use it.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import torch
from inflbench.errors import ConfigError

_CODES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32"}

#: Gradient blocks scored by default: the LoRA matrices and the output projection of a classification head
#: (``classifier`` of BERT-like models, ``classifier.out_proj`` of RoBERTa, ``score`` of decoder classifiers).
DEFAULT_BLOCKS = [r"lora_[AB]$", r"(^|\.)classifier(\.out_proj)?$", r"(^|\.)score$"]

#: A gradient store keeps each block's per-sample squared L2 norms beside it, as the ``(n,)`` float64 tensor
#: ``NORM_PREFIX + block``, written with the rows; readers list blocks without them (:attr:`TensorStore.names`).
NORM_PREFIX = "sq_norm:"


class StoreWriter:
    """Preallocated safetensors file; ``write(name, start, rows)`` fills rows ``start:start+len(rows)``.

    Written to ``<path>.part`` and renamed on :meth:`close`, so an interrupted job leaves no output.
    ``reserve``: spare header bytes, so :meth:`set_metadata` can add facts known only at the end."""

    def __init__(self, path: str | Path, specs: Mapping[str, tuple[Sequence[int], torch.dtype]],
                 metadata: Mapping[str, str] | None = None, reserve: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(self.path.name + ".part")
        header: dict = {"__metadata__": dict(metadata or {})} if metadata else {}
        self.layout: dict[str, tuple[int, int, torch.dtype, tuple[int, ...]]] = {}
        offset = 0
        for name, (shape, dtype) in specs.items():
            shape = tuple(int(s) for s in shape)
            nbytes = math.prod(shape) * dtype.itemsize
            header[name] = {"dtype": _CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            row = math.prod(shape[1:]) * dtype.itemsize if shape else nbytes
            self.layout[name] = (offset, row, dtype, shape)
            offset += nbytes
        self.header = header
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-(len(raw) + reserve) % 8 + reserve)  # JSON padded with spaces (allowed)
        self.base = 8 + len(raw)
        self.fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self.fd, struct.pack("<Q", len(raw)) + raw)
        os.ftruncate(self.fd, self.base + offset)  # sparse until written

    def write(self, name: str, start: int, rows: torch.Tensor) -> None:
        offset, row, dtype, shape = self.layout[name]
        rows = rows.detach().to("cpu", dtype).contiguous()
        if tuple(rows.shape[1:]) != shape[1:] or start + rows.shape[0] > shape[0]:
            raise ValueError(f"{name}: rows {tuple(rows.shape)} at {start} do not fit {shape}")
        buf = rows.reshape(-1).view(torch.uint8).numpy()
        done, at = 0, self.base + offset + start * row
        while done < len(buf):
            done += os.pwrite(self.fd, buf[done:], at + done)

    def set_metadata(self, metadata: Mapping[str, str]) -> None:
        """Replace the file's metadata; it must fit the header written at creation plus ``reserve``."""
        raw = json.dumps({**self.header, "__metadata__": dict(metadata)}, separators=(",", ":")).encode()
        if len(raw) > self.base - 8:
            raise ValueError(f"{self.path}: metadata of {len(raw)} bytes exceeds the reserved header")
        os.pwrite(self.fd, raw + b" " * (self.base - 8 - len(raw)), 8)

    def close(self) -> None:
        os.close(self.fd)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        os.close(self.fd)
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.abort() if exc_type else self.close()


_DTYPES = {code: dtype for dtype, code in _CODES.items()}


class GradientStoreWriter(StoreWriter):
    """A :class:`StoreWriter` that writes each block's per-sample squared norms with its rows (as
    ``NORM_PREFIX + block``, float64), so no consumer needs a pass over the store for them.
    ``specs`` lists the blocks only; the norm entries are added here."""

    def __init__(self, path: str | Path, specs: Mapping[str, tuple[Sequence[int], torch.dtype]],
                 metadata: Mapping[str, str] | None = None, reserve: int = 0):
        norms = {NORM_PREFIX + k: ((shape[0],), torch.float64) for k, (shape, _) in specs.items()}
        super().__init__(path, {**specs, **norms}, metadata, reserve)

    def write(self, name: str, start: int, rows: torch.Tensor) -> None:
        from inflbench.methods._common import sq_norms

        super().write(name, start, rows)
        stored = rows.detach().to("cpu", self.layout[name][2])  # the norms of the rows as stored
        super().write(NORM_PREFIX + name, start, sq_norms(stored))


class TensorStore:
    """Reader of a safetensors file by tensor and row range. Reads go through ``pread`` into fresh buffers,
    not a memory map, so a job's resident memory holds only what it asked for."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        with open(self.path, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(size))
        self.base = 8 + size
        self.metadata = header.pop("__metadata__", None) or {}
        self._info = header
        order = sorted(header, key=lambda k: header[k]["data_offsets"][0])  # file order
        self.names = [k for k in order if not k.startswith(NORM_PREFIX)]
        self._norms = {k[len(NORM_PREFIX):] for k in order if k.startswith(NORM_PREFIX)}

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._info[name]["shape"])

    def read(self, name: str, start: int | None = None, stop: int | None = None,
             dtype: torch.dtype | None = None) -> torch.Tensor:
        """Rows ``start:stop`` of one tensor (all rows by default), optionally cast to ``dtype``."""
        info = self._info[name]
        shape, stored = self.shape(name), _DTYPES[info["dtype"]]
        rows = shape[0] if shape else 1
        start, stop = max(0, start or 0), min(rows, rows if stop is None else stop)
        stop = max(start, stop)
        row = math.prod(shape[1:]) * stored.itemsize
        # torch's allocator aligns to 64 bytes: BLAS kernels may round differently on unaligned buffers; host
        # memory also inside a device context (scoring on a GPU reads coupled methods' blocks lazily there)
        raw = torch.empty((stop - start) * row, dtype=torch.uint8, device="cpu")
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.base + info["data_offsets"][0] + start * row)
            view, done = memoryview(raw.numpy()), 0
            while done < len(view):
                got = f.readinto(view[done:])
                if not got:
                    raise ValueError(f"{self.path}: file ends inside tensor {name!r}")
                done += got
        t = raw.view(stored).reshape((stop - start, *shape[1:]) if shape else ())
        return t if dtype is None else t.to(dtype)

    def sq_norms(self, name: str, start: int | None = None, stop: int | None = None) -> torch.Tensor | None:
        """Stored per-sample squared norms of block ``name`` (rows ``start:stop``), or None if the store has none."""
        return self.read(NORM_PREFIX + name, start, stop) if name in self._norms else None

    def lazy(self, names: Sequence[str] | None = None, upcast: bool = False) -> "LazyTensors":
        """Name -> tensor mapping that reads each tensor when it is accessed (file order; ``names``: a subset;
        ``upcast``: half-precision tensors read as float32)."""
        return LazyTensors(self, names, upcast)

    def row_chunks(self, name: str, max_bytes: int = 64 << 20) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, rows)`` chunks of one tensor, each at most ``max_bytes`` (at least one row)."""
        shape = self.shape(name)
        row = max(1, math.prod(shape[1:]) * 8)
        step = max(1, max_bytes // row)
        for start in range(0, shape[0], step):
            yield start, self.read(name, start, min(start + step, shape[0]))


class LazyTensors(Mapping):
    """Read-on-access view of a :class:`TensorStore`: consumers going block by block hold one block.

    The last tensor read is kept (one slot, released before the next read), so a consumer that reads a block
    twice in a row reads the file once. ``shape_of`` / ``dtype_of`` answer from the header, without reading."""

    def __init__(self, store: TensorStore, names: Sequence[str] | None = None, upcast: bool = False):
        self.store = store
        self.keys_ = list(store.names if names is None else names)
        missing = [k for k in self.keys_ if k not in store._info]
        if missing:
            raise KeyError(f"{store.path}: no tensors {missing[:3]}")
        self.upcast = upcast
        self._last: tuple[str, torch.Tensor] | None = None

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.keys_:
            raise KeyError(name)
        if self._last is not None and self._last[0] == name:
            return self._last[1]
        self._last = None
        t = self.store.read(name)
        if self.upcast and t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        self._last = (name, t)
        return t

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.store.shape(name)

    def dtype_of(self, name: str) -> torch.dtype:
        dtype = _DTYPES[self.store._info[name]["dtype"]]
        return torch.float32 if self.upcast and dtype in (torch.float16, torch.bfloat16) else dtype

    def __contains__(self, name) -> bool:
        return name in self.keys_

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_)

    def __len__(self) -> int:
        return len(self.keys_)


def block_groups(sizes: Mapping[str, int], max_bytes: int) -> list[list[str]]:
    """Consecutive blocks packed into groups of at most ``max_bytes`` (a larger block is a group alone)."""
    out: list[list[str]] = []
    used = 0
    for name, size in sizes.items():
        if out and used + size <= max_bytes:
            out[-1].append(name)
            used += size
        else:
            out.append([name])
            used = size
    return out


def shard_blocks(sizes: Mapping[str, int], shards: int, shard: int) -> list[str]:
    """Blocks of shard ``shard`` of ``shards``: contiguous runs of blocks of about equal total size."""
    total = sum(sizes.values()) or 1
    out, acc = [], 0
    for name, size in sizes.items():
        mid = acc + size / 2  # a block goes to the shard holding its midpoint
        if min(int(mid * shards / total), shards - 1) == shard:
            out.append(name)
        acc += size
    return out


# ------------------------------------------------------------------ block selection
def select_blocks(names: Iterable[str], spec: Mapping | None, *, check: bool = True,
                  key: str = "gradients.blocks") -> list[str]:
    """Block names kept by ``{include: [regex] | null, exclude: [regex]}`` (``re.search``), in the given order.

    The include entry ``default`` stands for :data:`DEFAULT_BLOCKS`; ``include: null`` = ``[default]``. With
    ``check`` a configured regex that matches no block (or an empty selection) raises ConfigError naming the key."""
    names = list(names)
    spec = dict(spec or {})
    include = list(spec.get("include") or ["default"])
    exclude = list(spec.get("exclude") or [])
    for which, patterns in (("include", include), ("exclude", exclude)):
        for p in patterns:
            if which == "include" and p == "default":
                continue
            try:
                re.compile(p)
            except re.error as exc:
                raise ConfigError(f"{key}.{which}", f"invalid regex {p!r}: {exc}") from None
            if check and not any(re.search(p, n) for n in names):
                raise ConfigError(f"{key}.{which}", f"{p!r} matches no block (blocks look like {names[:2]})")
    patterns = [q for p in include for q in (DEFAULT_BLOCKS if p == "default" else [p])]
    kept = [n for n in names if any(re.search(p, n) for p in patterns) and not any(re.search(p, n) for p in exclude)]
    if check and not kept:
        raise ConfigError(key, f"selects no block (blocks look like {names[:2]})")
    return kept
