"""Hypothesis property tests over random block shapes, sample counts and gradient scales."""

from __future__ import annotations

import pytest
import torch
from method_refs import GRADIENT_METHODS, ref_exact_block
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import assert_close

from inflbench import methods
from inflbench.methods import compute_influence
from synthetic_grads import synthetic_grads

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])

block_shape = st.one_of(
    st.tuples(st.integers(1, 7)),
    st.tuples(st.integers(1, 4), st.integers(1, 9)),
    st.tuples(st.integers(1, 9), st.integers(1, 4)),
)


@st.composite
def problems(draw, dtype=torch.float32):
    shapes = {f"b{i}": draw(block_shape) for i in range(draw(st.integers(1, 3)))}
    n = draw(st.integers(1, 12))
    m = draw(st.integers(1, 5))
    log_scale = draw(st.floats(-4, 2))
    seed = draw(st.integers(0, 10_000))
    tr, te, _, _ = synthetic_grads(shapes, n, m, seed=seed, latent=4, scale=1.0, dtype=torch.float64)
    return tr, te, 10.0**log_scale, dtype


def _cast(d, s, dtype):
    return {k: (s * v).to(dtype) for k, v in d.items()}


DAMPED = [n for n in GRADIENT_METHODS if "damping" in methods.get(n).param_names()]  # scale-free by damping


@pytest.mark.parametrize("name", GRADIENT_METHODS)
@SETTINGS
@given(problems())
def test_defaults_finite_on_any_scale_and_shape(name, prob):
    tr, te, s, dtype = prob
    res = compute_influence(name, _cast(tr, s, dtype), _cast(te, s, dtype))
    n, m = next(iter(tr.values())).shape[0], next(iter(te.values())).shape[0]
    assert not res.meta.get("diverged", False)
    for v in res.values():
        assert v.shape == (n, m) and bool(torch.isfinite(v).all())


@pytest.mark.parametrize("name", DAMPED)
@SETTINGS
@given(problems())
def test_damped_defaults_are_scale_invariant(name, prob):
    """Default damping scales with ||g||^2, so scores do not depend on the gradient scale."""
    tr, te, s, dtype = prob
    base = compute_influence(name, _cast(tr, 1.0, torch.float64), _cast(te, 1.0, torch.float64)).total()
    scaled = compute_influence(name, _cast(tr, s, dtype), _cast(te, s, dtype)).total()
    assert_close(scaled, base, "scale_invariance_float32", f"{name} scale={s:g}")


@SETTINGS
@given(problems(dtype=torch.float64))
def test_exact_block_matches_loop_reference_on_random_shapes(prob):
    tr, te, s, dtype = prob
    tr, te = _cast(tr, s, dtype), _cast(te, s, dtype)
    res = compute_influence("exact_block", tr, te)
    ref = ref_exact_block(tr, te)
    for k in tr:
        assert_close(res[k], ref[k], "float64_reference", k)


@SETTINGS
@given(problems(dtype=torch.float64))
def test_hessian_free_scaling(prob):
    tr, te, s, dtype = prob
    a = compute_influence("tracin", tr, te).total()
    b = compute_influence("tracin", _cast(tr, s, dtype), _cast(te, s, dtype)).total()
    assert_close(b, a * s * s, "float64_reference")
    c = compute_influence("cosine", _cast(tr, s, dtype), _cast(te, s, dtype)).total()
    assert bool((c.abs() <= 1 + 1e-9).all())
    assert_close(c, compute_influence("cosine", tr, te).total(), "float64_reference")
