"""RRInf eq. (5) / Remark 2: normalised SGD on the ridge problem (4), rows of ``Phi`` sampled per step."""

from __future__ import annotations

import math
from typing import Callable, Literal, Mapping, Sequence

import torch
from torch import Tensor

from inflbench.solvers.common import col_sq_norms, read_twice, small_op_threads, sym_gram, thin_shares

RRInfSampling = Literal["neuron", "minibatch", "layer", "full"]


def _shape(blocks: Sequence[Tensor], b: int) -> tuple[int, ...]:
    get = getattr(blocks, "shape_of", None)
    return tuple(get(b)) if get is not None else tuple(blocks[b].shape)


class _Flat(Sequence):
    """Blocks as ``(rows, d_b)`` views, each fetched from the source when indexed (a lazy source is read
    then, so only the block in use is resident)."""

    def __init__(self, blocks: Sequence[Tensor]):
        self.blocks = blocks
        self.shapes = [_shape(blocks, b) for b in range(len(blocks))]

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, b: int) -> Tensor:
        t = self.blocks[b]
        return t.reshape(t.shape[0], -1)


class RowSource:
    """Rows of ``Phi`` (one per parameter) stored block-wise as ``(n, d_b)`` tensors.

    Gives the RRInf updates without concatenating the blocks: rows are addressed
    by a global index, mapped to (block, column) through cumulative sizes.
    """

    def __init__(self, train_blocks: Sequence[Tensor], target_blocks: Sequence[Tensor], dtype, target_scale: float = 1.0,
                 block_sq: Sequence[float] | None = None):
        if len(train_blocks) != len(target_blocks) or not train_blocks:
            raise ValueError("train_blocks and target_blocks must be non-empty and of equal length")
        self.X, self.Y = _Flat(train_blocks), _Flat(target_blocks)
        flat = lambda s: (s[0], math.prod(s[1:]))  # noqa: E731
        xs, ys = [flat(s) for s in self.X.shapes], [flat(s) for s in self.Y.shapes]
        n, C = xs[0][0], ys[0][0]
        for x, y in zip(xs, ys):
            if x[0] != n or y[0] != C or x[1] != y[1]:
                raise ValueError("block shapes disagree: train (n, d_b), targets (C, d_b)")
        self.n, self.C, self.dtype, self.tscale = n, C, dtype, float(target_scale)
        self.sizes = [x[1] for x in xs]
        self.offsets = torch.tensor([0] + self.sizes).cumsum(0)
        self.d = int(self.offsets[-1])
        self._row_sq: list[Tensor] | None = None
        # ||Phi_b||_F^2: given (e.g. summed per-sample norms), else from the row norms
        self.block_sq = (torch.tensor([float(v) for v in block_sq], dtype=torch.float64) if block_sq is not None
                         else torch.stack([r.sum() for r in self.row_sq]))
        self.fro_sq = float(self.block_sq.sum())

    @property
    def row_sq(self) -> list[Tensor]:
        """Squared row norms ``||phi_iota||^2`` per block (float64), computed on first use (a strided
        pass over the store that the correct variant's layer / full modes never need)."""
        if self._row_sq is None:
            self._row_sq = [col_sq_norms(x) for x in self.X]
        return self._row_sq

    def gather(self, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Rows ``idx`` (global, any order) -> (Phi_rows (n, B), Y_rows (C, B), row_sq (B,)) in that order."""
        blk = torch.searchsorted(self.offsets, idx, right=True) - 1
        P = torch.empty(self.n, idx.numel(), dtype=self.dtype)
        Y = torch.empty(self.C, idx.numel(), dtype=self.dtype)
        sq = torch.empty(idx.numel(), dtype=torch.float64)
        for b in torch.unique(blk).tolist():
            sel = (blk == b).nonzero().flatten()
            local = idx[sel] - self.offsets[b]
            P[:, sel] = self.X[b][:, local].to(self.dtype)
            Y[:, sel] = self.Y[b][:, local].to(self.dtype) * self.tscale
            if self._row_sq is not None:
                sq[sel] = self._row_sq[b][local]
            else:  # uniform sampling needs only the drawn rows' norms, not a pass over the store
                sq[sel] = col_sq_norms(self.X[b][:, local])
        return P, Y, sq.to(self.dtype)


def rrinf_sgd(
    train_blocks: Sequence[Tensor],
    target_blocks: Sequence[Tensor],
    *,
    damping: float,
    iterations: int,
    lr: float = 0.01,
    sampling: RRInfSampling = "neuron",
    batch_size: int = 1,
    seed: int = 0,
    variant: Literal["correct", "published"] = "correct",
    dtype: torch.dtype = torch.float32,
    gram_cache_bytes: int = 1 << 30,
    target_scale: float = 1.0,
    callback: Callable[[int, Tensor], None] | None = None,
    stats: dict | None = None,
    grams: Mapping[int, Callable[[], Tensor]] | None = None,
    block_sq: Sequence[float] | None = None,
) -> Tensor:
    """RRInf normalised SGD (eq. (5), Remark 2) on the multi-target ridge problem.

    Problem (Remark 1): ``min_Omega (1/d) ||Phi Omega - Upsilon||_F^2 + lt ||Omega||_F^2``
    with ``lt = n * damping / d``. ``Phi`` (d x n) has one row ``phi_iota`` per
    parameter; its minimiser is ``Omega* = Phi^T (Phi Phi^T + n lambda I)^{-1} Upsilon``.

    Layout (no concatenated copy is made): ``train_blocks[b]`` is ``(n, *shape_b)``
    (sample-major, i.e. ``Phi_b^T``), ``target_blocks[b]`` is ``(C, *shape_b)``
    (i.e. ``Upsilon_b^T``). A dense problem is one block.

    Influence mapping: with targets ``Upsilon = -n * g_test`` (one test sample
    per column c) the solution is ``Omega*[i, c] = -g_i^T (G + lambda I)^{-1} g_test_c``
    with ``G = (1/n) sum_i g_i g_i^T`` -- exactly the influence score
    (RRInf eq. (2); positive = up-weighting sample i increases the test loss).

    Steps (``S_t`` the rows used at step t, ``eta = lr``):

    * ``variant="published"`` is eq. (5)/Remark 2 verbatim: rows drawn
      uniformly, ``Omega -= (2 eta / |S_t|) sum_{iota in S_t} [phi (phi^T Omega - Y_iota) / ||phi||^2
      + lt Omega]``. Its fixed point is the minimiser of a *row-reweighted*
      ridge problem (weights ``1 / ||phi_iota||^2``), which equals ``Omega*``
      only when all parameter rows have equal norm.
    * ``variant="correct"`` (default) draws rows with probability proportional
      to ``||phi_iota||^2`` (randomised-Kaczmarz sampling). Then the normalised
      step is an unbiased estimate of ``(d / ||Phi||_F^2) grad J``:
      ``Omega -= 2 eta [ (1/|S_t|) sum phi (phi^T Omega - Y_iota) / ||phi||^2
      + (n lambda / ||Phi||_F^2) Omega ]`` and the fixed point is ``Omega*``.

    Sampling: ``"neuron"`` -- ``batch_size`` parameter rows drawn i.i.d. (with
    replacement) per step (paper: 1 row); ``"minibatch"`` -- ``batch_size`` rows
    per step (RRInf_mb; published: uniformly without replacement within the
    step; correct: i.i.d. importance draws, which keeps the step unbiased); ``"layer"`` -- one
    block per step, all its rows (published: block uniform, per-row
    normalisation; correct: block ``b`` with probability ``||Phi_b||_F^2/||Phi||_F^2``
    and normalisation by ``||Phi_b||_F^2``); ``"full"`` -- all rows each step:
    deterministic gradient descent (correct: exact gradient of J scaled by
    ``d / ||Phi||_F^2``, converging to ``Omega*`` for ``0 < lr < ||Phi||_F^2 /
    (lambda_max(Phi^T Phi) + n lambda)``, i.e. any ``lr < 1``).

    Block Gram matrices ``Phi_b^T Phi_b`` (n x n) are cached for layer / full
    modes while they fit ``gram_cache_bytes``; otherwise the step is computed
    from the rows directly. ``target_scale`` multiplies the targets on the fly
    (pass test gradients and ``-n`` to avoid a scaled copy). callback(k, Omega_k)
    after each step. If ``stats`` is a dict it receives ``touched_fraction``
    (share of parameter rows used by at least one step). ``grams``: block index ->
    loader of a known ``Phi_b^T Phi_b`` (n x n); used by the correct variant's layer / full
    modes at no formation cost. ``block_sq``: known ``||Phi_b||_F^2`` per block. Returns
    ``Omega`` (n, C) in ``dtype``.
    """
    C0 = max(1, _shape(target_blocks, 0)[0] if len(target_blocks) else 1)
    n0 = _shape(train_blocks, 0)[0] if len(train_blocks) else 1
    per_bytes = 0.0
    if sampling in ("neuron", "minibatch"):
        per_op = 4.0 * batch_size * n0 * C0
    else:
        per_op = 2.0 * n0 * n0 * C0
        # a step streams a cached n x n Gram or (uncached) the block itself twice
        d0 = min((math.prod(_shape(train_blocks, b)[1:]) for b in range(len(train_blocks))), default=1)
        per_bytes = 4.0 * n0 * min(n0, 2 * d0)
    # block steps from the rows with one target column: one share of each block's columns per thread (only
    # there: between the cached Grams' multi-threaded steps a hand-over per block cost more than it saved)
    thin = C0 if sampling in ("layer", "full") else math.inf
    with small_op_threads(per_op, per_bytes), thin_shares(thin) as shares:
        return _rrinf_sgd_impl(
            train_blocks, target_blocks, damping=damping, iterations=iterations, lr=lr, sampling=sampling,
            batch_size=batch_size, seed=seed, variant=variant, dtype=dtype, gram_cache_bytes=gram_cache_bytes,
            target_scale=target_scale, callback=callback, stats=stats, grams=grams, block_sq=block_sq,
            shares=shares,
        )


def _rrinf_sgd_impl(
    train_blocks, target_blocks, *, damping, iterations, lr, sampling, batch_size, seed, variant, dtype,
    gram_cache_bytes, target_scale, callback, stats, grams=None, block_sq=None, shares=None,
) -> Tensor:
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if sampling not in ("neuron", "minibatch", "layer", "full"):
        raise ValueError(f"sampling must be one of neuron, minibatch, layer, full; got {sampling!r}")
    if variant not in ("correct", "published"):
        raise ValueError(f"variant must be 'correct' or 'published', got {variant!r}")
    if not (damping > 0 and math.isfinite(damping)):
        raise ValueError(f"damping must be positive and finite, got {damping}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be positive and finite, got {lr}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    src = RowSource(train_blocks, target_blocks, dtype, target_scale, block_sq)
    n, C, d = src.n, src.C, src.d
    if src.fro_sq <= 0:
        raise ValueError("all training gradients are zero")
    gen = torch.Generator().manual_seed(int(seed))  # draws on the host: the same rows on every device
    host = {"generator": gen, "device": "cpu"}
    Omega = torch.zeros(n, C, dtype=dtype)
    two_eta = 2.0 * lr
    if variant == "correct":
        reg = n * damping / src.fro_sq
    else:
        reg = n * damping / d  # lambda-tilde of eq. (4)

    # ---- row-sampling modes ------------------------------------------------
    touched_rows = torch.zeros(d, dtype=torch.bool) if (stats is not None and sampling in ("neuron", "minibatch")) else None
    touched_blocks: set[int] = set()

    def _finish(result: Tensor) -> Tensor:
        if stats is not None:
            if sampling == "full":
                frac = 1.0 if iterations > 0 else 0.0
            elif touched_rows is not None:
                frac = float(touched_rows.sum()) / d
            else:
                frac = sum(src.sizes[b] for b in touched_blocks) / d
            stats["touched_fraction"] = frac
        return result

    if sampling in ("neuron", "minibatch"):
        if variant == "correct":
            cdf = torch.cat(src.row_sq).to("cpu", torch.float64).cumsum(0)
            total = float(cdf[-1])

        def draw(steps: int) -> Tensor:
            """(steps, batch_size) global row indices."""
            if variant == "correct":
                u = torch.rand(steps * batch_size, dtype=torch.float64, **host) * total
                idx = torch.searchsorted(cdf, u, right=True).clamp_(max=d - 1)
                return idx.reshape(steps, batch_size)
            if sampling == "neuron" or batch_size == 1:
                return torch.randint(0, d, (steps, batch_size), **host)
            if batch_size >= d:
                return torch.stack([torch.randperm(d, **host)[:batch_size] for _ in range(steps)])
            rows = []
            for _ in range(steps):  # uniform without replacement, by rejection (batch_size << d)
                pick = torch.unique(torch.randint(0, d, (batch_size,), **host))
                while pick.numel() < batch_size:
                    more = torch.randint(0, d, (batch_size - pick.numel(),), **host)
                    pick = torch.unique(torch.cat([pick, more]))
                rows.append(pick[torch.randperm(batch_size, **host)])
            return torch.stack(rows)

        chunk = max(1, min(iterations, (32 << 20) // max(1, batch_size * (n + C) * 4)))
        k = 0
        while k < iterations:
            steps = min(chunk, iterations - k)
            idx = draw(steps).reshape(-1).to(Omega.device)
            if touched_rows is not None:
                touched_rows[idx] = True
            P, Y, sq = src.gather(idx)  # (n, steps*B), (C, steps*B), (steps*B,), in idx order
            inv_sq = torch.where(sq > 0, 1.0 / sq, torch.zeros_like(sq))
            for t in range(steps):
                sl = slice(t * batch_size, (t + 1) * batch_size)
                Pt = P[:, sl]
                resid = Pt.T @ Omega - Y[:, sl].T  # (B, C)
                step = Pt @ (resid * inv_sq[sl, None]) / batch_size
                Omega = Omega - two_eta * (step + reg * Omega)
                k += 1
                if callback is not None:
                    callback(k, Omega)
        return _finish(Omega)

    # ---- block modes (layer / full) -----------------------------------------
    nb = len(src.X)
    cache: dict[int, tuple[Tensor, Tensor]] = {}
    cache_used = 0
    gram_bytes = n * n * torch.finfo(dtype).bits // 8

    known = dict(grams) if grams is not None and variant == "correct" else {}
    # cache a block's Gram only when its expected visits make it cheaper than row-wise steps
    # (a known Gram costs nothing to form)
    if sampling == "layer":
        p_visit = (src.block_sq / src.block_sq.sum()).tolist() if variant == "correct" else [1.0 / nb] * nb
        worth = [
            iterations * p_visit[b] * (4.0 * n * src.sizes[b] * C - 2.0 * n * n * C)
            > (0.0 if b in known else 1.25 * n * n * src.sizes[b]) + 2.0 * n * src.sizes[b] * C
            for b in range(nb)
        ]
    else:
        worth = [True] * nb

    def block_terms(b: int) -> tuple[Tensor, Tensor] | None:
        """(Phi_b^T W Phi_b, Phi_b^T W Y_b) with W = 1 (correct) or diag(1/||phi||^2) (published)."""
        nonlocal cache_used
        if b in cache:
            return cache[b]
        if not worth[b] or cache_used + gram_bytes > gram_cache_bytes:
            return None
        X = src.X[b].to(dtype)
        Yb = src.Y[b].to(dtype)
        if variant == "published":
            w = src.row_sq[b].to(dtype)
            w = torch.where(w > 0, 1.0 / w, torch.zeros_like(w))
            Xs = X * w.sqrt()
            terms = (sym_gram(Xs), ((X * w) @ Yb.T) * src.tscale)
        else:
            K = known[b]().to(dtype) if b in known else sym_gram(X)
            terms = (K, (X @ Yb.T) * src.tscale)
        cache[b] = terms
        cache_used += gram_bytes
        return terms

    def block_step(b: int) -> Tensor:
        """sum_{iota in b} w_iota phi (phi^T Omega - Y_iota)."""
        terms = block_terms(b)
        if terms is not None:
            K, PY = terms
            return K @ Omega - PY
        X = src.X[b].to(dtype)
        Yb = src.Y[b].to(dtype)
        w = None
        if variant == "published":
            w = src.row_sq[b].to(dtype)
            w = torch.where(w > 0, 1.0 / w, torch.zeros_like(w))

        def resid(P: Tensor, cols: slice) -> Tensor:  # (C, |cols|) from P = Omega^T X[:, cols]
            r = P - src.tscale * Yb[:, cols]
            return r * w[cols] if w is not None else r

        return read_twice(X, Omega, resid, shares)  # X as the transposed operand is slower

    if sampling == "layer":
        if variant == "correct":
            pb = (src.block_sq / src.block_sq.sum()).to("cpu", torch.float64)
        for k in range(1, iterations + 1):
            if variant == "correct":
                b = int(torch.multinomial(pb, 1, generator=gen))
                w = 1.0 / float(src.block_sq[b])
            else:
                b = int(torch.randint(0, nb, (1,), **host))
                w = 1.0 / src.sizes[b]
            touched_blocks.add(b)
            terms = block_terms(b)
            if terms is not None:  # Omega <- (1 - 2 eta lt) Omega - 2 eta w (K Omega - PY): one GEMM, one axpy
                K, PY = terms
                Omega = torch.addmm(Omega, K, Omega, beta=1.0 - two_eta * reg, alpha=-two_eta * w)
                Omega.add_(PY, alpha=two_eta * w)
            else:
                Omega = Omega - two_eta * (block_step(b) * w + reg * Omega)
            if callback is not None:
                callback(k, Omega)
        _share_terms(stats, variant, cache, None, src.tscale)
        return _finish(Omega)

    # full gradient descent: sum over all blocks; cache the summed Gram when it pays off
    K_all = None
    direct_cost = iterations * 4 * n * d * C
    gram_cost = n * n * (d - sum(src.sizes[b] for b in known)) + 2 * n * C * (d + n * iterations)
    if iterations > 0 and gram_cost < direct_cost:
        K_all = torch.zeros(n, n, dtype=dtype)
        PY_all = torch.zeros(n, C, dtype=dtype)
        for b in range(nb):
            X = src.X[b].to(dtype)
            Yb = src.Y[b].to(dtype)
            if variant == "published":
                w = src.row_sq[b].to(dtype)
                w = torch.where(w > 0, 1.0 / w, torch.zeros_like(w))
                Xw = X * w
            else:
                Xw = X
            if variant == "published":
                K_all += sym_gram(X * w.sqrt())
            else:
                K_all += known[b]().to(dtype) if b in known else sym_gram(X)
            PY_all += (Xw @ Yb.T) * src.tscale
    norm = src.fro_sq if variant == "correct" else d
    for k in range(1, iterations + 1):
        if K_all is not None:
            g = K_all @ Omega - PY_all
        else:
            g = sum(block_step(b) for b in range(nb))
        Omega = Omega - two_eta * (g / norm + reg * Omega)
        if callback is not None:
            callback(k, Omega)
    _share_terms(stats, variant, cache, (K_all, PY_all) if K_all is not None else None, src.tscale)
    return _finish(Omega)


def _share_terms(stats: dict | None, variant: str, cache: dict, whole, tscale: float) -> None:
    """Hand the Grams the steps used to the caller (``stats["gram_terms"]``), so the convergence check
    needs no pass over the store for them: ``{"blocks": {b: (K_b, X_b T_b^T)}, "all": (sum K_b, sum X_b T_b^T)
    or None}`` (correct variant only: the published one caches row-reweighted Grams)."""
    if stats is None or variant != "correct":
        return
    stats["gram_terms"] = {"blocks": {b: (K, PY / tscale) for b, (K, PY) in cache.items()},
                           "all": (whole[0], whole[1] / tscale) if whole is not None else None}
