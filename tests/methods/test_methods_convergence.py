"""Each converging method reaches its exact estimand; published variants behave as documented."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from method_refs import default_lambda, fisher, make_grads, ref_exact_block, ref_exact_joint
from tolerances import TOL, assert_close

from inflbench.methods import compute_influence


def _rows(t):
    return t.reshape(t.shape[0], -1).double()


def ref_hyperinf_block(tr, te, lam):
    """Explicit GFIM reference: G = 1/(n r) sum_i g_i g_i^T over the long side, exact inverse."""
    n = tr.shape[0]
    mats_tr = [x.double().reshape(x.shape[0], -1) if x.dim() >= 2 else x.double()[:, None] for x in tr]
    mats_te = [x.double().reshape(x.shape[0], -1) if x.dim() >= 2 else x.double()[:, None] for x in te]
    if mats_tr[0].shape[0] < mats_tr[0].shape[1]:
        mats_tr = [x.T for x in mats_tr]
        mats_te = [x.T for x in mats_te]
    L, r = mats_tr[0].shape
    G = torch.zeros(L, L, dtype=torch.float64)
    for g in mats_tr:
        G += g @ g.T
    G /= n * r
    Ainv = torch.linalg.inv(G + lam * torch.eye(L, dtype=torch.float64))
    S = torch.empty(n, len(mats_te), dtype=torch.float64)
    for i, gi in enumerate(mats_tr):
        for j, gj in enumerate(mats_te):
            S[i, j] = -(gj * (Ainv @ gi)).sum()
    return S


# ----------------------------------------------------------------- HyperINF


def test_hyperinf_schulz_reaches_exact_gfim_inverse_float64():
    tr, te = make_grads(n=9, m=4)
    lams = {k: 0.5 * default_lambda(tr, [k]) * 40 for k in tr}  # well conditioned
    res = compute_influence("hyperinf", tr, te, damping=lams, iterations=40, tol=None)
    for k in tr:
        assert_close(res[k], ref_hyperinf_block(tr[k], te[k], lams[k]), "schulz_exact", k)
    assert res.meta["schulz_residual_max"] < 1e-10 and res.meta["diverged"] is False


def test_hyperinf_default_damping_converges_with_default_iterations():
    tr, te = make_grads(n=12, m=3)
    res = compute_influence("hyperinf", tr, te)
    for k in tr:
        assert_close(res[k], ref_hyperinf_block(tr[k], te[k], default_lambda(tr, [k])), "schulz_exact", k)
    assert res.meta["schulz_iterations_run"] <= 20


def test_hyperinf_float32_close_on_well_conditioned_blocks():
    tr, te = make_grads(dtype=torch.float32)
    lams = {k: 20 * default_lambda(tr, [k]) for k in tr}
    res = compute_influence("hyperinf", tr, te, damping=lams)
    for k in tr:
        assert_close(res[k], ref_hyperinf_block(tr[k], te[k], lams[k]), "schulz_float32", k)


def test_hyperinf_equals_exact_for_rank_one_blocks_and_differs_for_lora():
    """A 1-D block has r = 1, so GFIM == FIM; for r > 1 the GFIM is an approximation."""
    tr, te = make_grads()
    h = compute_influence("hyperinf", tr, te, iterations=60, tol=None)
    e = compute_influence("exact_block", tr, te)
    assert_close(h["head"], e["head"], "schulz_exact")
    assert float((h["l0.A"] - e["l0.A"]).abs().max()) > 1e-3 * float(e["l0.A"].abs().max())


def test_hyperinf_train_side_application_when_more_tests_than_train():
    tr, te = make_grads(n=3, m=11)
    res = compute_influence("hyperinf", tr, te, iterations=60, tol=None)
    for k in tr:
        assert_close(res[k], ref_hyperinf_block(tr[k], te[k], default_lambda(tr, [k])), "schulz_exact", k)


def test_hyperinf_published_variant_divergence():
    """(Its reference test is in test_methods_published.py.)"""
    tr, te = make_grads(n=6, m=3, scale=1.0)
    # gradients ~1e3 larger: lambda_max(A) >> 2 / 5e-5, the fixed X0 diverges -> flagged, warned
    big_tr = {k: 1e3 * v for k, v in tr.items()}
    big_te = {k: 1e3 * v for k, v in te.items()}
    with pytest.warns(RuntimeWarning, match="diverged"):
        res = compute_influence("hyperinf", big_tr, big_te, variant="published", iterations=20)
    assert res.meta["diverged"] is True and res.meta["diverged_blocks"]
    # while the safe X0 converges on the same data
    ok = compute_influence("hyperinf", big_tr, big_te)
    assert ok.meta["diverged"] is False


@pytest.mark.parametrize("n", [5, 40])
def test_hyperinf_fim_reaches_exact_block(n):
    """n < d_b runs Schulz on K/n (n x n), n > d_b on the Fisher (d x d); both reach exact_block."""
    tr, te = make_grads(n=n, m=4)
    lams = {k: 10 * default_lambda(tr, [k]) for k in tr}
    res = compute_influence("hyperinf_fim", tr, te, damping=lams, iterations=40, tol=None)
    ref = ref_exact_block(tr, te, lams)
    for k in tr:
        assert_close(res[k], ref[k], "schulz_exact", k)


def test_hyperinf_fim_sides_agree_before_convergence():
    """Push-through: the n x n and d x d Schulz iterates give identical scores at every iteration."""
    tr, te = make_grads(n=8, m=3, shapes={"a": (2, 3)})  # d = 6 < n: d x d side
    few = compute_influence("hyperinf_fim", tr, te, iterations=3, tol=None)["a"]
    # reference: explicit d x d Schulz with the same scalar X0
    X = _rows(tr["a"])
    G = fisher(X)
    lam = default_lambda(tr, ["a"])
    A = G + lam * torch.eye(6, dtype=torch.float64)
    c0 = 2.0 / (float(torch.linalg.matrix_norm(G)) + 2 * lam)
    Xk = c0 * torch.eye(6, dtype=torch.float64)
    for _ in range(3):
        Xk = Xk @ (2 * torch.eye(6, dtype=torch.float64) - A @ Xk)
    assert_close(few, -(X @ Xk @ _rows(te["a"]).T), "float64_reference")
    # n x n side (n > d is false here for 'b')
    tr2, te2 = make_grads(n=4, m=3, shapes={"b": (3, 3)})  # d = 9 > n
    few2 = compute_influence("hyperinf_fim", tr2, te2, iterations=3, tol=None)["b"]
    X2 = _rows(tr2["b"])
    G2 = fisher(X2)
    lam2 = default_lambda(tr2, ["b"])
    A2 = G2 + lam2 * torch.eye(9, dtype=torch.float64)
    c2 = 2.0 / (float(torch.linalg.matrix_norm(G2)) + 2 * lam2)
    Xk = c2 * torch.eye(9, dtype=torch.float64)
    for _ in range(3):
        Xk = Xk @ (2 * torch.eye(9, dtype=torch.float64) - A2 @ Xk)
    assert_close(few2, -(X2 @ Xk @ _rows(te2["b"]).T), "float64_reference")


# ----------------------------------------------------------------- LiSSA


def _lissa_depth(tr, lams, tol=1e-9):
    """Depth for (1 - lambda/s)^depth < tol with s = ||G||_F + lambda (the default scale)."""
    depth = 0
    for k in tr:
        s = float(torch.linalg.matrix_norm(fisher(_rows(tr[k])))) + lams[k]
        depth = max(depth, math.ceil(math.log(tol) / math.log(1 - lams[k] / s)))
    return depth


@pytest.mark.parametrize("n", [5, 40])
def test_lissa_reaches_exact_block(n):
    tr, te = make_grads(n=n, m=4)
    lams = {k: 5 * default_lambda(tr, [k]) for k in tr}
    depth = _lissa_depth(tr, lams)
    assert depth < 20000
    res = compute_influence("lissa", tr, te, damping=lams, depth=depth)
    ref = ref_exact_block(tr, te, lams)
    for k in tr:
        assert_close(res[k], ref[k], "lissa_exact", k)
    assert res.meta["diverged"] is False


def test_lissa_float32_reaches_exact_block():
    tr, te = make_grads(dtype=torch.float32)
    lams = {k: 5 * default_lambda(tr, [k]) for k in tr}
    res = compute_influence("lissa", tr, te, damping=lams, depth=_lissa_depth(tr, lams, 1e-6))
    ref = ref_exact_block(tr, te, lams)
    for k in tr:
        assert_close(res[k], ref[k], "lissa_float32", k)


def test_lissa_published_diverges_when_lambda_max_above_two_and_is_flagged():
    tr, te = make_grads(scale=1.0)
    lmax = max(float(torch.linalg.eigvalsh(fisher(_rows(v)))[-1]) for v in tr.values())
    assert lmax > 2.5
    with pytest.warns(RuntimeWarning, match="diverged"):
        res = compute_influence("lissa", tr, te, variant="published", depth=30)
    assert res.meta["diverged"] is True
    # shrink the gradients so lambda_max(G) < 1: the published recursion then behaves
    s = 0.5 / math.sqrt(lmax)
    small_tr = {k: s * v for k, v in tr.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = compute_influence("lissa", small_tr, {k: s * v for k, v in te.items()}, variant="published", depth=30)
    assert res.meta["diverged"] is False


def test_lissa_flag_sees_a_crawling_recursion():
    """A few strong gradient directions over weak noise: the recursion crawls (steps of 0.3 %, scores
    still 22 % off exact_block at depth 100); the flag extrapolates the remaining error from the
    last two steps instead of reading the small last step as convergence."""
    g = torch.Generator().manual_seed(0)
    U = torch.randn(512, 4, generator=g, dtype=torch.float64)
    w = torch.tensor([10.0, 5, 2, 1], dtype=torch.float64)

    def grads(k):
        return ((torch.randn(k, 4, generator=g, dtype=torch.float64) * w) @ U.T
                + 0.3 * torch.randn(k, 512, generator=g, dtype=torch.float64)).reshape(k, 8, 64)

    tr, te = {"a": grads(40)}, {"a": grads(5)}
    ex = compute_influence("exact_block", tr, te)["a"]
    for depth, flagged in ((100, True), (10000, False)):
        res = compute_influence("lissa", tr, te, depth=depth)
        err = float((res["a"] - ex).norm() / ex.norm())
        assert res.meta["converged"] is not flagged, (depth, err, res.meta["convergence"])
        assert (err > 0.1) is flagged
        assert 0.3 * err <= res.meta["estimated_remaining_error_max"] <= 3 * err + 1e-12


def test_lissa_too_small_scale_is_flagged_not_silent():
    tr, te = make_grads()
    with pytest.warns(RuntimeWarning, match="diverged"):
        res = compute_influence("lissa", tr, te, scale=1e-3, depth=40)
    assert res.meta["diverged"] is True and "l0.A" in str(res.meta["diverged_blocks"])


# ----------------------------------------------------------------- RRInf


def test_rrinf_full_reaches_exact_joint():
    tr, te = make_grads(n=9, m=4)
    res = compute_influence("rrinf", tr, te, sampling="full", iterations=30000, lr=0.5)
    assert_close(res["total"], ref_exact_joint(tr, te), "rrinf_full_exact")
    assert res.meta["touched_fraction"] == 1.0


def test_rrinf_full_custom_damping():
    tr, te = make_grads(n=9, m=4)
    res = compute_influence("rrinf", tr, te, sampling="full", iterations=4000, lr=0.5, damping=0.5)
    assert_close(res["total"], ref_exact_joint(tr, te, 0.5), "rrinf_full_exact")


@pytest.mark.parametrize("sampling", ["neuron", "minibatch", "layer"])
def test_rrinf_stochastic_correlates_with_exact_joint(sampling):
    tr, te = make_grads(n=9, m=4)
    res = compute_influence("rrinf", tr, te, sampling=sampling, iterations=6000, lr=0.05, batch_size=4, damping=0.5)
    ref = ref_exact_joint(tr, te, 0.5)
    corr = torch.corrcoef(torch.stack([res["total"].flatten(), ref.flatten()]))[0, 1]
    assert float(corr) > TOL["rrinf_stochastic_min_corr"]["value"]


def test_rrinf_published_neuron_touches_few_parameters():
    tr, te = make_grads()
    d = sum(v[0].numel() for v in tr.values())
    res = compute_influence("rrinf", tr, te, variant="published", sampling="neuron", iterations=10)
    assert 0 < res.meta["touched_fraction"] <= 10 / d


@pytest.mark.parametrize("scale", [1.0, 1e-20])
def test_rrinf_published_convergence_flag(scale):
    """The published update is flagged against its own (row-reweighted) fixed point: full gradient
    descent reaches it; 50 neuron steps at the paper's lr do not."""
    tr, te = make_grads(n=6, m=3)
    tr, te = {k: v * scale for k, v in tr.items()}, {k: v * scale for k, v in te.items()}
    ok = compute_influence("rrinf", tr, te, variant="published", sampling="full", iterations=2000, lr=0.5)
    assert ok.meta["converged"] is True and ok.meta["reweighted_ridge_residual_max"] < 1e-8
    few = compute_influence("rrinf", tr, te, variant="published", sampling="neuron", iterations=50, lr=0.01)
    assert few.meta["converged"] is False and "reweighted ridge residual" in few.meta["convergence"]
    # the residual measures the distance to the fixed point: a step towards it lowers it
    more = compute_influence("rrinf", tr, te, variant="published", sampling="full", iterations=20, lr=0.5)
    assert ok.meta["reweighted_ridge_residual_max"] < more.meta["reweighted_ridge_residual_max"] < 1.0


def test_rrinf_rejects_per_block_damping_and_bad_lr():
    tr, te = make_grads()
    with pytest.raises(ValueError, match="damping"):
        compute_influence("rrinf", tr, te, damping={k: 1.0 for k in tr})
    with pytest.raises(ValueError, match="lr"):
        compute_influence("rrinf", tr, te, lr=1.5)
    with pytest.raises(ValueError, match="sampling.*neuron"):
        compute_influence("rrinf", tr, te, sampling="block")


@pytest.mark.parametrize("name", ["hyperinf", "hyperinf_fim"])
@pytest.mark.parametrize("iterations", [1, 2, 5])
def test_schulz_safe_x0_never_flagged_diverged_when_stopped_early(name, iterations):
    tr, te = make_grads()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = compute_influence(name, tr, te, iterations=iterations, tol=None)
    assert res.meta["diverged"] is False
    assert res.meta["schulz_iterations_run"] == iterations


def test_lissa_routes_agree_with_explicit_scale():
    """With an explicit scale the matrix-free form is used for few test samples; same scores."""
    from inflbench.methods.lissa import lissa_route

    tr, te = make_grads(n=40, m=1, shapes={"a": (6, 8)})
    assert lissa_route(40, 48, 1, 5, gram_needed=False) == "matfree"
    assert lissa_route(40, 48, 1, 5, gram_needed=True) in ("nspace", "dspace")
    X = _rows(tr["a"])
    s = float(torch.linalg.matrix_norm(fisher(X))) + default_lambda(tr, ["a"])
    fast = compute_influence("lissa", tr, te, scale=s, depth=5)["a"]
    gram = compute_influence("lissa", tr, te, depth=5)["a"]  # default scale == s, Gram route
    assert_close(fast, gram, "float64_reference")
