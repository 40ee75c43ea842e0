"""Low-level solvers on explicit matrices against direct float64 references."""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # tests/ (tolerances.py)
from tolerances import TOL, assert_close  # noqa: E402

from inflbench.solvers import (  # noqa: E402
    PUBLISHED_HYPERINF_X0,
    datainf_apply,
    direct_solve,
    lambda_max_bound,
    lissa_solve,
    rrinf_sgd,
    schulz_apply,
    schulz_inverse,
    schulz_x0_scale,
)

D64 = torch.float64


def spd_problem(d=12, N=30, lam=0.05, seed=0, scale=1.0, batch=()):
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(*batch, N, d, generator=g, dtype=D64) * torch.linspace(2, 0.1, d, dtype=D64) * scale
    M = S.transpose(-1, -2) @ S / N + lam * scale**2 * torch.eye(d, dtype=D64)
    v = torch.randn(*batch, d, 3, generator=g, dtype=D64)
    return S, M, v


# ----------------------------------------------------------------- Schulz


@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e3])
def test_schulz_safe_x0_contracts_and_converges(scale):
    _, M, _ = spd_problem(scale=scale)
    c0 = schulz_x0_scale(M)
    R0 = torch.eye(12, dtype=D64) - c0 * M
    assert float(torch.linalg.matrix_norm(R0, ord=2)) < 1
    assert float(lambda_max_bound(M)) >= float(torch.linalg.eigvalsh(M)[-1])
    X = schulz_inverse(M, iterations=40)
    assert_close(X, torch.linalg.inv(M), "solver_float64")


def test_schulz_batched_and_callback():
    _, M, _ = spd_problem(batch=(3,))
    seen = []
    X = schulz_inverse(M, iterations=30, callback=lambda k, Xk: seen.append((k, float(torch.linalg.matrix_norm(Xk @ M - torch.eye(12, dtype=D64)).max()))))
    assert [k for k, _ in seen] == list(range(1, 31))
    assert seen[-1][1] < 1e-9 < seen[0][1]
    assert_close(X, torch.linalg.inv(M), "solver_float64")


def test_schulz_published_x0_diverges_on_large_spectrum_and_converges_on_small():
    _, M, _ = spd_problem(lam=0.05)
    big = M * (3.0 / PUBLISHED_HYPERINF_X0 / float(torch.linalg.eigvalsh(M)[-1]))  # lambda_max * x0 = 3 > 2
    X = schulz_inverse(big, iterations=30, x0=PUBLISHED_HYPERINF_X0)
    assert not bool(torch.isfinite(X).all()) or float((X @ big - torch.eye(12, dtype=D64)).abs().max()) > 1
    small = M / float(torch.linalg.eigvalsh(M)[-1])  # lambda_max = 1
    X = schulz_inverse(small, iterations=40, x0=0.5)
    assert_close(X, torch.linalg.inv(small), "solver_float64")


@pytest.mark.parametrize("iterations", [0, 1, 3, 7, 30])
def test_schulz_apply_equals_schulz_inverse_times_v(iterations):
    _, M, v = spd_problem(batch=(2,))
    ref = schulz_inverse(M, iterations=iterations) @ v
    W, done = schulz_apply(M, v, iterations=iterations)
    assert done == iterations
    assert_close(W, ref, "solver_float64", f"iterations={iterations}")


def test_schulz_apply_tol_stops_early_at_converged_value():
    _, M, v = spd_problem()
    W, done = schulz_apply(M, v, iterations=60, tol=1e-13)
    assert done < 60
    assert_close(W, torch.linalg.solve(M, v), "solver_float64")


def _schulz_apply_checked_every_step(A, V, iterations, tol):
    """For-loop reference: the product form with the full residual norm checked after every squaring."""
    A = (A + A.transpose(-1, -2)) * 0.5
    c0 = schulz_x0_scale(A).reshape(*A.shape[:-2], 1, 1)
    R = torch.eye(A.shape[-1], dtype=A.dtype) - c0 * A
    W, done = c0 * V, 0
    for k in range(1, iterations + 1):
        W, done = W + R @ W, k
        if k == iterations:
            break
        R = R @ R
        if bool(torch.all(torch.linalg.matrix_norm(R) <= tol)):
            return W + R @ W, k + 1
    return W, done


@pytest.mark.parametrize("d,batch,tol", [(12, (), 1e-13), (12, (3,), 1e-6), (300, (2,), 1e-9), (300, (), 1e-3)])
def test_schulz_apply_trace_skip_stops_where_every_step_check_stops(d, batch, tol):
    """The exact norm is skipped only while the trace proves it above tol: same stop, same result."""
    _, M, _ = spd_problem(d=d, N=2 * d, batch=batch, lam=1e-3)
    v = torch.randn(*batch, d, 3, generator=torch.Generator().manual_seed(1), dtype=D64)
    ref, ref_done = _schulz_apply_checked_every_step(M, v, 60, tol)
    W, done = schulz_apply(M, v, iterations=60, tol=tol)
    assert 2 < done < 60 and done == ref_done
    assert_close(W, ref, "solver_float64", f"d={d} batch={batch} tol={tol}")


@pytest.mark.parametrize("spectrum", ["flat", "decaying", "rank1"])
def test_schulz_trace_bound_never_skips_a_residual_at_or_below_tol(spectrum):
    """``_surely_above(S S^T, tol)`` only when ``||S S^T||_F > tol``; a flat spectrum makes the bound tight."""
    from inflbench.solvers.common import sym_gram
    from inflbench.solvers.schulz import _surely_above

    d = 300
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(2), dtype=D64))
    lam = {"flat": torch.full((d,), 0.3, dtype=D64), "decaying": torch.logspace(0, -4, d, dtype=D64),
           "rank1": torch.cat([torch.ones(1, dtype=D64), torch.zeros(d - 1, dtype=D64)])}[spectrum]
    S = (Q * lam) @ Q.T
    S = (S + S.T) * 0.5
    R = sym_gram(S)
    norm = float(torch.linalg.matrix_norm(R))
    for f in (0.5, 0.9, 0.999, 1.0, 1.001, 2.0, 1e3):
        if _surely_above(R, norm * f):
            assert f < 1, (spectrum, f)
    if spectrum == "flat":  # tight: it does skip just below the norm
        assert _surely_above(R, norm * 0.98)


def test_schulz_rejects_bad_x0():
    _, M, _ = spd_problem()
    for bad in ("fast", -1.0, 0.0, float("nan")):
        with pytest.raises(ValueError, match="x0"):
            schulz_inverse(M, iterations=2, x0=bad)


# ----------------------------------------------------------------- LiSSA


def test_lissa_correct_converges_to_direct():
    S, M, v = spd_problem(lam=0.1)
    G = S.T @ S / S.shape[0]
    scale = float(lambda_max_bound(M))
    seen = []
    x, div = lissa_solve(lambda z: G @ z, v, damping=0.1, scale=scale, depth=3000, callback=lambda k, e: seen.append(k))
    assert not div and seen == list(range(1, 3001))
    assert_close(x, direct_solve(M, v), "solver_float64")


@pytest.mark.parametrize("variant", ["correct", "published"])
def test_lissa_callbacks_get_estimates_and_iterates(variant):
    """``callback`` gets each step's estimate as its own tensor; ``iterate_callback`` the iterate, which is the
    estimate times the scale (correct variant)."""
    S, M, v = spd_problem(lam=0.1)
    G = S.T @ S / S.shape[0]
    scale = float(lambda_max_bound(M))
    est, its = [], []
    x, _ = lissa_solve(G, v, damping=0.1, scale=scale, depth=5, variant=variant,
                       callback=lambda k, e: est.append(e), iterate_callback=lambda k, it: its.append(it.clone()))
    assert len(est) == len(its) == 5
    for e, it in zip(est, its):
        assert_close(e, it / scale if variant == "correct" else it, "solver_float64")
    assert torch.equal(est[-1], x) and not torch.equal(est[0], est[1])  # kept estimates are not overwritten


def test_lissa_published_matches_explicit_recursion_and_flags_divergence():
    S, _, v = spd_problem(lam=0.1)
    G = S.T @ S / S.shape[0]
    G = G * (3.0 / float(torch.linalg.eigvalsh(G)[-1]))  # lambda_max(G) = 3 > 2 + lambda
    lam = 0.01
    x_ref = v.clone()
    for _ in range(15):
        x_ref = v + x_ref - G @ x_ref + lam * x_ref
    x, div = lissa_solve(lambda z: G @ z, v, damping=lam, scale=10.0, depth=15, variant="published")
    assert_close(x, x_ref, "solver_float64")
    assert div
    # same matrix, the correct variant with a safe scale converges and is not flagged
    M = G + lam * torch.eye(12, dtype=D64)
    x, div = lissa_solve(lambda z: G @ z, v, damping=lam, scale=float(lambda_max_bound(M)), depth=20000)
    assert not div
    assert_close(x, direct_solve(M, v), "solver_float64")


def test_lissa_flags_too_small_scale_and_nonfinite():
    S, M, v = spd_problem(lam=0.1)
    G = S.T @ S / S.shape[0]
    lmax = float(torch.linalg.eigvalsh(M)[-1])
    _, div = lissa_solve(lambda z: G @ z, v, damping=0.1, scale=lmax / 3, depth=200)
    assert div
    x, div = lissa_solve(lambda z: G @ z, v, damping=0.1, scale=lmax / 3, depth=5000)
    assert div
    with pytest.raises(ValueError, match="variant"):
        lissa_solve(lambda z: z, v, damping=0.1, scale=1.0, depth=1, variant="x")


def _lissa_checked_every_step(G, v, lam, sc, depth, variant):
    """For-loop reference of the batched recursion and its divergence flag, written out step by step."""
    x, min_inc = v, torch.linalg.vector_norm(v, dim=(1, 2)).to(D64)
    diverged = ~torch.isfinite(min_inc)
    eps = torch.finfo(v.dtype).eps
    for _ in range(depth):
        gx = G @ x
        x_new = v + x - (gx + lam * x) / sc if variant == "correct" else v + x - gx + lam * x
        inc = torch.linalg.vector_norm(x_new - x, dim=(1, 2)).to(D64)
        floor = 64 * eps * torch.linalg.vector_norm(x_new, dim=(1, 2)).to(D64)
        diverged |= ~torch.isfinite(inc) | ((inc > floor) & (inc > min_inc * (1 + 1e-3)))
        min_inc = torch.minimum(min_inc, torch.nan_to_num(inc, nan=float("inf")))
        x = x_new
    return (x / sc if variant == "correct" else x), diverged


@pytest.mark.parametrize("variant", ["correct", "published"])
@pytest.mark.parametrize("dtype", [torch.float32, D64])
def test_lissa_batched_matches_step_by_step_reference(variant, dtype):
    """Fused update and lazily checked rounding floor: same iterates, same per-problem divergence flags
    (a converging, a too-small-scale and a non-finite problem in one batch)."""
    S, _, _ = spd_problem(d=40, N=60, batch=(3,), lam=0.1)
    G = (S.transpose(-1, -2) @ S / 60).to(dtype)
    v = torch.randn(3, 40, 5, generator=torch.Generator().manual_seed(4), dtype=D64).to(dtype)
    v[2, 0, 0] = float("nan")
    lmax = torch.linalg.eigvalsh(G.to(D64))[:, -1].to(dtype)
    lam = torch.tensor([0.1 if variant == "correct" else 0.0, 0.1, 0.1], dtype=dtype)[:, None, None]
    if variant == "correct":
        sc = torch.stack([lmax[0] + 0.1, lmax[1] / 3, lmax[2] + 0.1])[:, None, None]
    else:
        sc = torch.ones(3, 1, 1, dtype=dtype)
        G = G / lmax[:, None, None] * torch.tensor([1.0, 3.0, 1.0], dtype=dtype)[:, None, None]
    ref, ref_div = _lissa_checked_every_step(G, v, lam, sc, 30, variant)
    # the operator as a callable, or as the matrix (its product accumulated into the step)
    for op in (lambda z: torch.bmm(G, z), G):
        x, div = lissa_solve(op, v, damping=lam, scale=sc, depth=30, variant=variant, batch_dims=1)
        assert div.tolist() == ref_div.tolist() == [False, True, True]
        assert_close(x[0], ref[0], "solver_float64" if dtype == D64 else "float32_reference")
        if dtype == D64:  # the diverging problem follows the same (growing) iterates
            assert_close(x[1], ref[1], "solver_float64")
    v0 = v[0].clone()
    x, _ = lissa_solve(G[0], v[0], damping=lam[0], scale=sc[0], depth=30, variant=variant)
    assert torch.equal(v[0], v0)  # the right-hand side is not overwritten
    assert_close(x, ref[0], "solver_float64" if dtype == D64 else "float32_reference")
    x, _ = lissa_solve(G[0], v[0, :, 1], damping=float(lam[0]), scale=float(sc[0]), depth=30, variant=variant)
    assert_close(x, ref[0][:, 1], "solver_float64" if dtype == D64 else "float32_reference")


# ----------------------------------------------------------------- DataInf


def test_datainf_apply_matches_average_of_inverses():
    S, _, v = spd_problem(lam=0.1, N=7)
    lam = 0.1
    ref = sum(torch.linalg.solve(torch.outer(s, s) + lam * torch.eye(12, dtype=D64), v) for s in S) / S.shape[0]
    assert_close(datainf_apply(S, v, lam), ref, "solver_float64")
    assert_close(datainf_apply(S, v[:, 0], lam), ref[:, 0], "solver_float64")
    one = S[:1]
    assert_close(datainf_apply(one, v, lam), direct_solve(one.T @ one + lam * torch.eye(12, dtype=D64), v), "solver_float64")


# ----------------------------------------------------------------- direct


def test_direct_solve_float64_and_lu_fallback():
    _, M, v = spd_problem()
    x = direct_solve(M.float(), v.float())
    assert x.dtype == D64
    indefinite = M - 2 * float(torch.linalg.eigvalsh(M)[-1]) * torch.eye(12, dtype=D64) * torch.linspace(0, 1, 12, dtype=D64)
    assert_close(direct_solve(indefinite, v), torch.linalg.solve(indefinite, v), "solver_float64")


# ----------------------------------------------------------------- RRInf


def ridge_problem(n=8, d=15, C=3, seed=1, lam=0.05):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=D64) * torch.linspace(3, 0.2, d, dtype=D64)  # (n, d) = Phi^T
    T = torch.randn(C, d, generator=g, dtype=D64)  # test gradients
    Y = -n * T  # targets Upsilon^T
    G = X.T @ X / n
    exact = -(X @ torch.linalg.solve(G + lam * torch.eye(d, dtype=D64), T.T))  # influence scores
    return X, Y, exact, lam


def test_rrinf_full_converges_to_ridge_solution_blockwise():
    X, Y, exact, lam = ridge_problem()
    blocks = [X[:, :4], X[:, 4:9], X[:, 9:]]
    targets = [Y[:, :4], Y[:, 4:9], Y[:, 9:]]
    seen = []
    Om = rrinf_sgd(blocks, targets, damping=lam, iterations=20000, lr=0.4, sampling="full", dtype=D64, callback=lambda k, o: seen.append(k))
    assert seen[-1] == 20000
    assert_close(Om, exact, "solver_float64")
    # no Gram cache: the row-wise path gives the same iterates
    Om2 = rrinf_sgd(blocks, targets, damping=lam, iterations=50, lr=0.4, sampling="full", dtype=D64, gram_cache_bytes=0)
    Om3 = rrinf_sgd(blocks, targets, damping=lam, iterations=50, lr=0.4, sampling="full", dtype=D64)
    assert_close(Om2, Om3, "solver_float64")


@pytest.mark.parametrize("variant", ["correct", "published"])
def test_rrinf_layer_cached_gram_steps_match_row_steps(variant):
    """Layer sampling: the fused step on a block's cached Gram (one GEMM + one axpy) gives the iterates of
    the row-wise step on the block itself (no cache), visit for visit."""
    X, Y, _, lam = ridge_problem()
    blocks = [X[:, :4], X[:, 4:9], X[:, 9:]]
    targets = [Y[:, :4], Y[:, 4:9], Y[:, 9:]]
    kw = dict(damping=lam, iterations=200, lr=0.05, sampling="layer", variant=variant, dtype=D64, seed=5)
    stats_cached, stats_rows = {}, {}
    cached = rrinf_sgd(blocks, targets, stats=stats_cached, **kw)
    rows = rrinf_sgd(blocks, targets, gram_cache_bytes=0, stats=stats_rows, **kw)
    assert_close(cached, rows, "solver_float64", variant)
    if variant == "correct":  # the cached path did run
        assert stats_cached["gram_terms"]["blocks"] and not stats_rows["gram_terms"]["blocks"]


def test_rrinf_published_full_converges_to_row_reweighted_ridge():
    """Eq. (5) verbatim has the fixed point (Phi^T W Phi / d + lt I) Omega = Phi^T W Y / d, W = 1/||phi||^2."""
    X, Y, exact, lam = ridge_problem()
    n, d = X.shape
    w = 1.0 / (X**2).sum(0)
    lt = n * lam / d
    ref = torch.linalg.solve((X * w) @ X.T / d + lt * torch.eye(n, dtype=D64), (X * w) @ Y.T / d)
    Om = rrinf_sgd([X], [Y], damping=lam, iterations=20000, lr=0.4, sampling="full", variant="published", dtype=D64)
    assert_close(Om, ref, "solver_float64")
    assert float((ref - exact).abs().max()) > 1e-2 * float(exact.abs().max())  # the bias is real


@pytest.mark.parametrize("sampling", ["neuron", "minibatch", "layer"])
def test_rrinf_stochastic_correct_approaches_ridge_solution(sampling):
    X, Y, exact, lam = ridge_problem(d=40)
    blocks = [X[:, i : i + 5] for i in range(0, 40, 5)]
    targets = [Y[:, i : i + 5] for i in range(0, 40, 5)]
    Om = rrinf_sgd(blocks, targets, damping=lam, iterations=6000, lr=0.02, sampling=sampling, batch_size=4, dtype=D64, seed=0)
    corr = torch.corrcoef(torch.stack([Om.flatten(), exact.flatten()]))[0, 1]
    assert float(corr) > TOL["rrinf_stochastic_min_corr"]["value"]
    assert float((Om - exact).norm() / exact.norm()) < 0.5


def test_rrinf_seed_reproducible_and_validation():
    X, Y, _, lam = ridge_problem()
    a = rrinf_sgd([X], [Y], damping=lam, iterations=50, seed=3, dtype=D64)
    b = rrinf_sgd([X], [Y], damping=lam, iterations=50, seed=3, dtype=D64)
    c = rrinf_sgd([X], [Y], damping=lam, iterations=50, seed=4, dtype=D64)
    assert torch.equal(a, b) and not torch.equal(a, c)
    for kw, match in [({"sampling": "x"}, "sampling"), ({"damping": 0.0}, "damping"), ({"lr": -1.0}, "lr"), ({"batch_size": 0}, "batch_size")]:
        args = dict(damping=lam, iterations=5)
        args.update(kw)
        with pytest.raises(ValueError, match=match):
            rrinf_sgd([X], [Y], **args)


# ----------------------------------------------------------------- sym_gram


@pytest.mark.parametrize("shape", [(5, 7), (300, 41), (2, 257, 30)])
def test_sym_gram_matches_matmul_and_is_exactly_symmetric(shape):
    from inflbench.solvers import sym_gram

    X = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=D64)
    K = sym_gram(X, 0.5)
    assert_close(K, 0.5 * X @ X.transpose(-1, -2), "solver_float64")
    assert torch.equal(K, K.transpose(-1, -2))
    strided = X[..., ::2]
    assert_close(sym_gram(strided), strided @ strided.transpose(-1, -2), "solver_float64")


@pytest.mark.parametrize("p", [7, 300])
def test_lower_gram_writes_the_lower_triangle_and_leaves_the_rest(p):
    from inflbench.solvers.common import gram_tile_edges, lower_gram_

    X = torch.randn(p, 33, generator=torch.Generator().manual_seed(0), dtype=D64)
    K = torch.full((p, p), float("nan"), dtype=D64)
    assert lower_gram_(K, X, 0.5) is K
    assert_close(K.tril(), (0.5 * X @ X.T).tril(), "solver_float64")
    edges = gram_tile_edges(p) if p >= 256 else [0, p]
    for a, b in zip(edges, edges[1:]):  # right of each diagonal tile: untouched
        assert K[a:b, b:].isnan().all()
    lower_gram_(K, X, 2.0, accumulate=True)
    assert_close(K.tril(), (2.5 * X @ X.T).tril(), "solver_float64")


def test_cholesky_solve_from_the_lower_triangle_only():
    """``lower_only``: whatever lies above the diagonal is never read, for the Cholesky route and, mirrored
    from the lower triangle, for the LU fallback of an indefinite matrix."""
    from inflbench.solvers.direct import cholesky_solve

    g = torch.Generator().manual_seed(0)
    Y = torch.randn(6, 9, generator=g, dtype=D64)
    R = torch.randn(6, 2, generator=g, dtype=D64)
    for M in (Y @ Y.T + 0.1 * torch.eye(6, dtype=D64), torch.diag(torch.tensor([2.0, -1, 3, 1, -4, 5], dtype=D64))
              + 0.1 * (Y[:, :6] + Y[:, :6].T)):
        garbage = M.tril() + torch.full((6, 6), float("nan"), dtype=D64).triu(1)
        assert_close(cholesky_solve(garbage, R, lower_only=True), torch.linalg.solve(M, R), "solver_float64")


def test_rrinf_small_ops_restore_thread_count():
    X, Y, _, lam = ridge_problem()
    before = torch.get_num_threads()
    rrinf_sgd([X], [Y], damping=lam, iterations=3, dtype=D64)
    assert torch.get_num_threads() == before
