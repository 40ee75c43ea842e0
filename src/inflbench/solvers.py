"""Low-level linear-algebra solvers shared by the influence methods and the
synthetic convergence study (HyperINF §4: error of ``M^{-1} v`` per iteration).

Everything here works on explicit matrices or matrix-vector products and knows
nothing about blocks, models or the registry. The public names and semantics
below are stable:

``schulz_inverse(A, *, iterations, x0="safe", callback=None)``
    Schulz (Newton–Schulz / hyperpower p=2) iteration ``X_{k+1} = X_k (2I - A X_k)``.
``schulz_apply(A, V, *, iterations, x0="safe", tol=None, callback=None)``
    The same iterates applied to a right-hand side, ``X_N V``, without forming
    ``X_N`` (cheaper when ``V`` has fewer columns than ``A``).
``lissa_solve(matvec, v, *, damping, scale, depth, callback=None, variant="correct")``
    LiSSA / Neumann recursion for ``(G + damping I)^{-1} v``.
``datainf_apply(S, v, damping)``
    DataInf's closed-form approximation of ``(1/N sum_i s_i s_i^T + damping I)^{-1} v``.
``rrinf_sgd(train_blocks, target_blocks, *, damping, iterations, lr, ...)``
    RRInf eq. (5) / Remark 2 normalised SGD on the ridge problem (4).
``direct_solve(M, v)``
    float64 Cholesky (fallback LU) reference solve.

Conventions: matrices may carry leading batch dimensions ``(..., d, d)``;
right-hand sides are ``(..., d)`` or ``(..., d, k)`` (several columns).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator, Literal, Mapping, Sequence

import torch
from torch import Tensor

__all__ = [
    "sym_gram",
    "lambda_max_bound",
    "schulz_x0_scale",
    "schulz_inverse",
    "schulz_apply",
    "lissa_solve",
    "lissa_increment_diverged",
    "datainf_apply",
    "rrinf_sgd",
    "direct_solve",
    "PUBLISHED_HYPERINF_X0",
]

#: Initial guess ``X0 = 5e-5 * I`` used by the published HyperINF code.
PUBLISHED_HYPERINF_X0 = 5e-5


# --------------------------------------------------------------------------- helpers

#: Loops whose single operations are smaller than this many flops run single-threaded:
#: on a busy machine, per-op thread synchronisation costs more than it saves.
_SMALL_OP_FLOPS = 2e7


#: ... unless they stream at least this many bytes (memory-bound products gain from every core).
_SMALL_OP_BYTES = 2 << 20


@contextmanager
def _threads_for(flops_per_op: float, bytes_per_op: float = 0.0) -> Iterator[None]:
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


#: Row tiles of :func:`sym_gram`: only the k(k+1)/2 lower tiles of ``X X^T`` are multiplied.
_GRAM_TILES = 4


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
    edges = [round(i * p / k) for i in range(k + 1)]
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


def _eye_like(A: Tensor) -> Tensor:
    d = A.shape[-1]
    return torch.eye(d, dtype=A.dtype, device=A.device).expand(A.shape)


def _as_batch_scalar(x: Tensor | float, A: Tensor) -> Tensor:
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


def schulz_x0_scale(A: Tensor, x0: Literal["safe"] | float | Tensor = "safe") -> Tensor:
    """The scalar ``c0`` with ``X0 = c0 * I`` (per batch element, shape ``A.shape[:-2]``).

    ``"safe"``: ``c0 = 1 / lambda_max_bound(A)`` which guarantees
    ``||I - A X0||_2 < 1`` for SPD ``A``. A float (or tensor) is used as-is
    (the HyperINF paper/code value is ``PUBLISHED_HYPERINF_X0``).
    """
    if isinstance(x0, str):
        if x0 != "safe":
            raise ValueError(f"x0 must be 'safe' or a positive float, got {x0!r}")
        c = lambda_max_bound(A)
        return 1.0 / c
    t = torch.as_tensor(x0, dtype=A.dtype, device=A.device)
    if not bool(torch.all(t > 0)) or not bool(torch.all(torch.isfinite(t))):
        raise ValueError(f"x0 must be positive and finite, got {x0!r}")
    return t.expand(A.shape[:-2]).clone() if t.dim() == 0 else t


# --------------------------------------------------------------------------- Schulz


def schulz_inverse(
    A: Tensor,
    *,
    iterations: int,
    x0: Literal["safe"] | float | Tensor = "safe",
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Approximate ``A^{-1}`` by the Schulz iteration ``X_{k+1} = X_k (2I - A X_k)``.

    A: ``(..., d, d)`` symmetric positive definite (batched over leading dims).
    x0: ``"safe"`` -> ``X0 = I / c`` with ``c = lambda_max_bound(A)`` so that
    ``||I - A X0||_2 < 1`` (convergence guaranteed, quadratic once the
    residual is small); a float ``c0`` -> ``X0 = c0 I`` (HyperINF paper/code,
    which converges only if ``c0 < 2 / lambda_max(A)``).
    callback(k, X_k) is called after each iteration ``k = 1..iterations``.
    Work happens in ``A.dtype``.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    c0 = schulz_x0_scale(A, x0)
    eye = _eye_like(A)
    X = eye * _as_batch_scalar(c0, A)
    two_eye = 2.0 * eye
    for k in range(1, iterations + 1):
        X = X @ (two_eye - A @ X)
        if callback is not None:
            callback(k, X)
    return X


def schulz_apply(
    A: Tensor,
    V: Tensor,
    *,
    iterations: int,
    x0: Literal["safe"] | float | Tensor = "safe",
    tol: float | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
) -> tuple[Tensor, int]:
    """``X_N V`` for the Schulz iterates ``X_k`` of :func:`schulz_inverse`, without forming ``X_N``.

    With ``X0 = c0 I`` every iterate is a polynomial in ``A``, and with
    ``R_k = I - A X_k`` one has ``R_{k+1} = R_k^2`` and ``X_{k+1} = X_k (I + R_k)``, so
    ``X_N V = c0 * prod_{k<N} (I + R_0^{2^k}) V``: one ``d x d`` squaring plus one
    ``d x d`` times ``d x k`` product per iteration instead of two ``d x d`` products.
    In exact arithmetic the result equals ``schulz_inverse(A, ...) @ V``.

    A: ``(..., d, d)`` SPD; V: ``(..., d, k)``. ``tol``: stop early once
    ``||R_k||_F <= tol`` (then ``||X_k - A^{-1}||`` is at most ``tol * ||A^{-1}||``).
    callback(k, X_k V). Returns ``(X_N V, iterations actually run)``.
    """
    W, done, _ = _schulz_apply_impl(A, V, iterations=iterations, x0=x0, tol=tol, callback=callback)
    return W, done


def _schulz_apply_impl(A, V, *, iterations, x0="safe", tol=None, callback=None):
    """:func:`schulz_apply` plus ``(||R_0||_F, ||R_{N-1}||_F)`` per batch element
    (``||R_{N-1}||_F^2`` bounds the final residual ``||I - A X_N||_F``). For SPD ``A``
    and ``rho(R_0) < 1`` the norms are non-increasing; a divergent iteration
    (``rho(R_0) > 1``) shows as a growing or non-finite value."""
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    A = (A + A.transpose(-1, -2)) * 0.5  # exactly symmetric, so R_k^2 = R_k R_k^T
    c0 = _as_batch_scalar(schulz_x0_scale(A, x0), A)
    R = _eye_like(A) - c0 * A
    r0 = torch.linalg.matrix_norm(R, ord="fro")
    W = c0 * V
    done = 0
    for k in range(1, iterations + 1):
        W = W + R @ W
        done = k
        if callback is not None:
            callback(k, W)
        if k == iterations:
            break
        R = sym_gram(R)
        if tol is not None:
            if bool(torch.all(torch.linalg.matrix_norm(R, ord="fro") <= tol)):
                # remaining factors (I + R_k) are I up to tol; apply one more to be safe
                W = W + R @ W
                done = k + 1
                if callback is not None:
                    callback(k + 1, W)
                break
    resid = torch.linalg.matrix_norm(R, ord="fro")
    return W, done, (r0, resid)


# --------------------------------------------------------------------------- LiSSA


def lissa_increment_diverged(min_norm: float, norm: float, x_norm: float, eps: float, rel: float = 1e-3) -> bool:
    """Divergence test for the LiSSA recursion.

    The increment ``x_k - x_{k-1} = B^k v`` (``B`` the iteration matrix, symmetric)
    is non-increasing in norm when the recursion converges. Flag when it is
    non-finite or grows above ``(1 + rel)`` times the smallest increment seen,
    ignoring increments at rounding-noise level (``<= 64 eps ||x_k||``).
    """
    if not math.isfinite(norm):
        return True
    if norm <= 64.0 * eps * x_norm:
        return False
    return norm > min_norm * (1.0 + rel)


def lissa_solve(
    matvec: Callable[[Tensor], Tensor],
    v: Tensor,
    *,
    damping: float | Tensor,
    scale: float | Tensor,
    depth: int,
    callback: Callable[[int, Tensor], None] | None = None,
    variant: Literal["correct", "published"] = "correct",
    batch_dims: int = 0,
) -> tuple[Tensor, bool | Tensor]:
    """LiSSA recursion for ``(G + damping I)^{-1} v`` given ``matvec(x) = G x``.

    ``variant="correct"`` (Agarwal et al. with damping and scaling):
    ``x_0 = v``, ``x_k = v + (I - (G + lambda I)/scale) x_{k-1}``, estimate
    ``x_k / scale``. Converges to ``(G + lambda I)^{-1} v`` whenever
    ``scale > lambda_max(G + lambda I) / 2``; the error after ``k`` steps is
    ``(I - A/scale)^{k+1}`` applied to ``A^{-1} v``.

    ``variant="published"`` reproduces the recursion of the DataInf code base:
    the damping is subtracted instead of added and no scaling is applied,
    ``x_k = v + (I - G + lambda I) x_{k-1}``, estimate ``x_k`` (``scale`` is
    ignored). It targets ``(G - lambda I)^{-1} v`` and diverges once
    ``lambda_max(G) - lambda > 2``.

    ``v`` may hold several columns (``(d, k)``); ``matvec`` must accept the
    same shape. With ``batch_dims > 0`` the leading ``batch_dims`` dimensions
    of ``v`` index independent problems (``matvec`` applies each one's
    ``G``), ``damping`` / ``scale`` may be tensors broadcastable against ``v``
    (e.g. ``(B, 1, 1)``) and ``diverged`` is a bool tensor of shape
    ``v.shape[:batch_dims]``. Divergence is flagged when an iterate is
    non-finite or the increment ``x_k - x_{k-1}`` (which is ``B^k v`` with
    ``B`` the iteration matrix, non-increasing in norm for a convergent
    recursion) grows; see :func:`lissa_increment_diverged`.
    callback(k, estimate_k) after each step ``k = 1..depth``.
    Returns ``(estimate, diverged)``.
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if variant not in ("correct", "published"):
        raise ValueError(f"variant must be 'correct' or 'published', got {variant!r}")
    lam = torch.as_tensor(damping, dtype=v.dtype)
    if not bool(torch.all(torch.isfinite(lam))) or bool(torch.any(lam < 0)):
        raise ValueError(f"damping must be finite and >= 0, got {damping}")
    sc = torch.as_tensor(scale, dtype=v.dtype)
    if variant == "correct" and (not bool(torch.all(torch.isfinite(sc))) or bool(torch.any(sc <= 0))):
        raise ValueError(f"scale must be positive and finite, got {scale}")
    red = tuple(range(batch_dims, v.dim()))
    bshape = v.shape[:batch_dims]

    def norm(t: Tensor) -> Tensor:
        return torch.linalg.vector_norm(t, dim=red) if red else t.abs()

    eps = torch.finfo(v.dtype).eps
    x = v
    diverged = ~torch.isfinite(norm(v)) if red else ~torch.isfinite(v)
    min_inc = torch.full(bshape, float("inf"), dtype=torch.float64)
    for k in range(1, depth + 1):
        gx = matvec(x)
        if variant == "correct":
            x_new = v + x - (gx + lam * x) / sc
        else:
            x_new = v + x - gx + lam * x
        inc = norm(x_new - x).to(torch.float64)
        floor = 64.0 * eps * norm(x_new).to(torch.float64)
        grew = (inc > floor) & (inc > min_inc * (1.0 + 1e-3))
        diverged = diverged | ~torch.isfinite(inc) | grew
        min_inc = torch.minimum(min_inc, torch.nan_to_num(inc, nan=float("inf")))
        x = x_new
        if callback is not None:
            callback(k, x / sc if variant == "correct" else x)
        if not bool(torch.isfinite(inc).any()):
            break
    result = x / sc if variant == "correct" else x
    diverged = diverged | ~torch.isfinite(norm(result))
    if batch_dims == 0:
        return result, bool(diverged.any())
    return result, diverged


# --------------------------------------------------------------------------- DataInf


def datainf_apply(S: Tensor, v: Tensor, damping: float | Tensor) -> Tensor:
    """DataInf's closed form for ``(1/N sum_i s_i s_i^T + lambda I)^{-1} v``.

    Kwon et al. swap the average and the inverse and use Sherman–Morrison:
    ``(1/N) sum_i (s_i s_i^T + lambda I)^{-1} v
    = (1/(N lambda)) sum_i (v - s_i (s_i^T v) / (lambda + ||s_i||^2))``.
    Exact when ``N == 1``. S: ``(..., N, d)``; v: ``(..., d)`` or ``(..., d, k)``.
    """
    vec = v.dim() == S.dim() - 1
    V = v.unsqueeze(-1) if vec else v
    lam = torch.as_tensor(damping, dtype=S.dtype, device=S.device)
    if lam.dim() > 0:
        lam = lam.reshape(lam.shape + (1, 1))
    N = S.shape[-2]
    sq = (S * S).sum(-1, keepdim=True)  # (..., N, 1)
    coef = (S @ V) / (lam + sq)  # (..., N, k)
    out = (V - S.transpose(-1, -2) @ coef / N) / lam
    return out.squeeze(-1) if vec else out


# --------------------------------------------------------------------------- direct


def direct_solve(M: Tensor, v: Tensor) -> Tensor:
    """Reference solve of ``M x = v`` in float64 (Cholesky; LU fallback if not PD).

    M: ``(..., d, d)``; v: ``(..., d)`` or ``(..., d, k)``. Returns float64.
    """
    M64 = M.to(torch.float64)
    v64 = v.to(torch.float64)
    vec = v64.dim() == M64.dim() - 1
    V = v64.unsqueeze(-1) if vec else v64
    L, info = torch.linalg.cholesky_ex(M64)
    if bool((info == 0).all()):
        X = torch.cholesky_solve(V, L)
    else:
        X = torch.linalg.solve(M64, V)
    return X.squeeze(-1) if vec else X


# --------------------------------------------------------------------------- RRInf


RRInfSampling = Literal["neuron", "minibatch", "layer", "full"]


class _RowSource:
    """Rows of ``Phi`` (one per parameter) stored block-wise as ``(n, d_b)`` tensors.

    Gives the RRInf updates without concatenating the blocks: rows are addressed
    by a global index, mapped to (block, column) through cumulative sizes.
    """

    def __init__(self, train_blocks: Sequence[Tensor], target_blocks: Sequence[Tensor], dtype, target_scale: float = 1.0,
                 block_sq: Sequence[float] | None = None):
        if len(train_blocks) != len(target_blocks) or not train_blocks:
            raise ValueError("train_blocks and target_blocks must be non-empty and of equal length")
        self.X = [t.reshape(t.shape[0], -1) for t in train_blocks]
        self.Y = [t.reshape(t.shape[0], -1) for t in target_blocks]
        n = self.X[0].shape[0]
        C = self.Y[0].shape[0]
        for x, y in zip(self.X, self.Y):
            if x.shape[0] != n or y.shape[0] != C or x.shape[1] != y.shape[1]:
                raise ValueError("block shapes disagree: train (n, d_b), targets (C, d_b)")
        self.n, self.C, self.dtype, self.tscale = n, C, dtype, float(target_scale)
        self.sizes = [x.shape[1] for x in self.X]
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
            # norms in the input precision (no input-sized temporaries), squared in float64
            self._row_sq = [
                torch.linalg.vector_norm(x if x.dtype in (torch.float32, torch.float64) else x.float(), dim=0).to(torch.float64) ** 2
                for x in self.X
            ]
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
            sq[sel] = self.row_sq[b][local]
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
    modes at no formation cost. ``block_sq``: known ``||Phi_b||_F^2`` per block. Returns ``Omega`` (n, C) in ``dtype``.
    """
    C0 = max(1, target_blocks[0].shape[0] if target_blocks else 1)
    n0 = train_blocks[0].shape[0] if train_blocks else 1
    per_bytes = 0.0
    if sampling in ("neuron", "minibatch"):
        per_op = 4.0 * batch_size * n0 * C0
    else:
        per_op = 2.0 * n0 * n0 * C0
        # a step streams a cached n x n Gram or (uncached) the block itself twice
        d0 = min((t[0].numel() for t in train_blocks), default=1)
        per_bytes = 4.0 * n0 * min(n0, 2 * d0)
    with _threads_for(per_op, per_bytes):
        return _rrinf_sgd_impl(
            train_blocks, target_blocks, damping=damping, iterations=iterations, lr=lr, sampling=sampling,
            batch_size=batch_size, seed=seed, variant=variant, dtype=dtype, gram_cache_bytes=gram_cache_bytes,
            target_scale=target_scale, callback=callback, stats=stats, grams=grams, block_sq=block_sq,
        )


def _rrinf_sgd_impl(
    train_blocks, target_blocks, *, damping, iterations, lr, sampling, batch_size, seed, variant, dtype,
    gram_cache_bytes, target_scale, callback, stats, grams=None, block_sq=None,
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
    src = _RowSource(train_blocks, target_blocks, dtype, target_scale, block_sq)
    n, C, d = src.n, src.C, src.d
    if src.fro_sq <= 0:
        raise ValueError("all training gradients are zero")
    gen = torch.Generator().manual_seed(int(seed))
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
            cdf = torch.cat(src.row_sq).cumsum(0)
            total = float(cdf[-1])

        def draw(steps: int) -> Tensor:
            """(steps, batch_size) global row indices."""
            if variant == "correct":
                u = torch.rand(steps * batch_size, dtype=torch.float64, generator=gen) * total
                idx = torch.searchsorted(cdf, u, right=True).clamp_(max=d - 1)
                return idx.reshape(steps, batch_size)
            if sampling == "neuron" or batch_size == 1:
                return torch.randint(0, d, (steps, batch_size), generator=gen)
            if batch_size >= d:
                return torch.stack([torch.randperm(d, generator=gen)[:batch_size] for _ in range(steps)])
            rows = []
            for _ in range(steps):  # uniform without replacement, by rejection (batch_size << d)
                pick = torch.unique(torch.randint(0, d, (batch_size,), generator=gen))
                while pick.numel() < batch_size:
                    more = torch.randint(0, d, (batch_size - pick.numel(),), generator=gen)
                    pick = torch.unique(torch.cat([pick, more]))
                rows.append(pick[torch.randperm(batch_size, generator=gen)])
            return torch.stack(rows)

        chunk = max(1, min(iterations, (32 << 20) // max(1, batch_size * (n + C) * 4)))
        k = 0
        while k < iterations:
            steps = min(chunk, iterations - k)
            idx = draw(steps).reshape(-1)
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
        resid = X.T @ Omega - src.tscale * Yb.T  # (d_b, C)
        if variant == "published":
            w = src.row_sq[b].to(dtype)
            w = torch.where(w > 0, 1.0 / w, torch.zeros_like(w))
            resid = resid * w[:, None]
        return X @ resid

    if sampling == "layer":
        if variant == "correct":
            pb = (src.block_sq / src.block_sq.sum()).to(torch.float64)
        for k in range(1, iterations + 1):
            if variant == "correct":
                b = int(torch.multinomial(pb, 1, generator=gen))
                g = block_step(b) / float(src.block_sq[b])
            else:
                b = int(torch.randint(0, nb, (1,), generator=gen))
                g = block_step(b) / src.sizes[b]
            touched_blocks.add(b)
            Omega = Omega - two_eta * (g + reg * Omega)
            if callback is not None:
                callback(k, Omega)
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
    return _finish(Omega)
