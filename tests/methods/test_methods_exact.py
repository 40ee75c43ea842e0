"""Closed-form and exact methods against slow explicit loop references."""

from __future__ import annotations

import pytest
import torch
from method_refs import (
    concat,
    default_lambda,
    make_grads,
    ref_datainf_block,
    ref_exact_block,
    ref_exact_joint,
)
from tolerances import assert_close

from inflbench.methods import compute_influence


def _rows(t):
    return t.reshape(t.shape[0], -1).double()


def test_tracin_matches_loop(grads64):
    tr, te = grads64
    res = compute_influence("tracin", tr, te)
    for k in tr:
        ref = torch.tensor([[-float(_rows(tr[k])[i] @ _rows(te[k])[j]) for j in range(4)] for i in range(9)], dtype=torch.float64)
        assert_close(res[k], ref, "float64_reference", k)


def test_cosine_matches_loop(grads64):
    tr, te = grads64
    a, b = concat(tr), concat(te)
    ref = torch.tensor([[-float(a[i] @ b[j] / (a[i].norm() * b[j].norm())) for j in range(4)] for i in range(9)], dtype=torch.float64)
    assert_close(compute_influence("cosine", tr, te).total(), ref, "float64_reference")


def test_cosine_zero_gradient_scores_zero(grads64):
    tr, te = grads64
    tr = {k: v.clone() for k, v in tr.items()}
    for v in tr.values():
        v[0] = 0
    res = compute_influence("cosine", tr, te).total()
    assert bool((res[0] == 0).all()) and bool(torch.isfinite(res).all())


@pytest.mark.parametrize("dtype,key", [(torch.float64, "float64_reference"), (torch.float32, "float32_reference")])
def test_tracin_cosine_float32(dtype, key):
    tr, te = make_grads(dtype=dtype)
    ref = {k: -(_rows(tr[k]) @ _rows(te[k]).T) for k in tr}
    res = compute_influence("tracin", tr, te)
    for k in tr:
        assert_close(res[k], ref[k], key, k)


def test_exact_block_matches_loop_reference(grads64):
    tr, te = grads64
    res = compute_influence("exact_block", tr, te)
    ref = ref_exact_block(tr, te)
    for k in tr:
        assert_close(res[k], ref[k], "float64_reference", k)
    lam = {k: float(res.meta["damping_min"]) for k in tr}
    assert min(default_lambda(tr, [k]) for k in tr) == pytest.approx(res.meta["damping_min"])


def test_exact_block_damping_scale(grads64):
    """damping_scale multiplies the default-rule lambda of every block (the damping sweep)."""
    tr, te = grads64
    res = compute_influence("exact_block", tr, te, damping_scale=10.0)
    ref = ref_exact_block(tr, te, {k: 10.0 * default_lambda(tr, [k]) for k in tr})
    for k in tr:
        assert_close(res[k], ref[k], "float64_reference", k)
    assert res.meta["damping_min"] == pytest.approx(10.0 * min(default_lambda(tr, [k]) for k in tr))
    with pytest.raises(ValueError, match="damping_scale"):
        compute_influence("exact_block", tr, te, damping_scale=0.0)


def test_exact_block_both_forms_agree():
    """n < d uses Woodbury, n > d uses the d x d form; both equal the loop reference."""
    for n in (3, 40):
        tr, te = make_grads(n=n, shapes={"a": (2, 5)})
        ref = ref_exact_block(tr, te, {"a": 0.37})
        assert_close(compute_influence("exact_block", tr, te, damping=0.37)["a"], ref["a"], "float64_reference", f"n={n}")


def test_exact_block_per_block_mapping(grads64):
    tr, te = grads64
    lams = {k: 0.1 * (i + 1) for i, k in enumerate(tr)}
    res = compute_influence("exact_block", tr, te, damping=lams)
    ref = ref_exact_block(tr, te, lams)
    for k in tr:
        assert_close(res[k], ref[k], "float64_reference", k)


@pytest.mark.parametrize("n", [5, 60])
def test_exact_joint_matches_loop_reference(n):
    tr, te = make_grads(n=n)
    ref = ref_exact_joint(tr, te)
    res = compute_influence("exact_joint", tr, te)
    assert set(res) == {"total"}
    assert_close(res["total"], ref, "float64_reference")
    assert res.meta["damping"] == pytest.approx(default_lambda(tr))


def test_exact_joint_blockwise_damping_mapping(grads64):
    tr, te = grads64
    lams = {k: 0.05 * (i + 1) for i, k in enumerate(tr)}
    diag = torch.cat([torch.full((tr[k][0].numel(),), lams[k], dtype=torch.float64) for k in tr])
    a, b = concat(tr), concat(te)
    from method_refs import fisher

    M = fisher(a) + torch.diag(diag)
    ref = -(a @ torch.linalg.solve(M, b.T))
    assert_close(compute_influence("exact_joint", tr, te, damping=lams)["total"], ref, "float64_reference")


def test_exact_joint_differs_from_block(grads64):
    """The blocks share latent structure, so the whole-model Fisher couples them."""
    tr, te = grads64
    j = compute_influence("exact_joint", tr, te, damping=0.3)["total"]
    b = compute_influence("exact_block", tr, te, damping=0.3).total()
    assert float((j - b).abs().max()) > 1e-3 * float(j.abs().max())


def test_datainf_matches_loop_reference(grads64):
    tr, te = grads64
    res = compute_influence("datainf", tr, te)
    for k in tr:
        ref = ref_datainf_block(_rows(tr[k]), _rows(te[k]), default_lambda(tr, [k]))
        assert_close(res[k], ref, "float64_reference", k)


def test_datainf_gram_route(grads64):
    """Few train samples, many test samples: the n x n route is taken; same result."""
    tr, te = make_grads(n=3, m=30)
    res = compute_influence("datainf", tr, te, damping=0.2)
    for k in tr:
        assert_close(res[k], ref_datainf_block(_rows(tr[k]), _rows(te[k]), 0.2), "float64_reference", k)


def test_datainf_equals_exact_with_one_training_sample():
    tr, te = make_grads(n=1, m=5)
    d = compute_influence("datainf", tr, te)
    e = compute_influence("exact_block", tr, te)
    for k in tr:
        assert_close(d[k], e[k], "datainf_single_sample", k)


def test_datainf_differs_from_exact_with_many_samples(grads64):
    tr, te = grads64
    d = compute_influence("datainf", tr, te).total()
    e = compute_influence("exact_block", tr, te).total()
    assert float((d - e).abs().max()) > 1e-2 * float(e.abs().max())


def test_datainf_float32_close_to_float64():
    tr, te = make_grads(dtype=torch.float32)
    r32 = compute_influence("datainf", tr, te)
    r64 = compute_influence("datainf", {k: v.double() for k, v in tr.items()}, {k: v.double() for k, v in te.items()})
    for k in tr:
        assert_close(r32[k], r64[k], "float32_cancelling", k)


def test_scores_invariant_to_gradient_scale_for_damped_methods():
    tr, te = make_grads()
    for name in ("exact_block", "exact_joint", "datainf"):
        base = compute_influence(name, tr, te).total()
        for s in (1e-4, 1e2):
            scaled = compute_influence(name, {k: s * v for k, v in tr.items()}, {k: s * v for k, v in te.items()}).total()
            assert_close(scaled, base, "scale_invariance", f"{name} x{s}")
