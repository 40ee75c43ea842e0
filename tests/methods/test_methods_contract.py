"""Contract tests parametrised over the registry: registering a method tests it."""

from __future__ import annotations

import pytest
import torch
from method_refs import GRADIENT_METHODS
from tolerances import assert_close

from inflbench import methods
from inflbench.methods import InfluenceResult, compute_influence


def _run(name, tr, te, **kw):
    return compute_influence(name, tr, te, **kw)


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_shapes_keys_dtype_finite(name, grads32):
    tr, te = grads32
    res = _run(name, tr, te)
    assert isinstance(res, InfluenceResult) and isinstance(res, dict)
    spec = methods.get(name)
    assert set(res) == ({"total"} if spec.couples_blocks else set(tr))
    for v in res.values():
        assert v.shape == (9, 4)
        assert v.dtype == torch.float64
        assert bool(torch.isfinite(v).all())
    assert res.meta["method"] == name
    assert all(isinstance(v, (str, float, bool)) for v in res.meta.values())


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_sign_self_influence_negative_and_flipped_positive(name, grads64):
    """Up-weighting a sample lowers its own loss (negative); a test gradient of -g_i makes it harmful."""
    tr, _ = grads64
    res = _run(name, tr, {k: v.clone() for k, v in tr.items()}).total()
    assert bool((res.diagonal() < 0).all()), res.diagonal()
    flipped = _run(name, tr, {k: -v for k, v in tr.items()}).total()
    assert bool((flipped.diagonal() > 0).all()), flipped.diagonal()


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_train_permutation_permutes_rows(name, grads64):
    tr, te = grads64
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    base = _run(name, tr, te)
    permuted = _run(name, {k: v[perm] for k, v in tr.items()}, te)
    for k in base:
        assert_close(permuted[k], base[k][perm], "permutation", f"{name}/{k}")


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_test_permutation_permutes_columns(name, grads64):
    tr, te = grads64
    perm = torch.tensor([2, 0, 3, 1])
    base = _run(name, tr, te)
    permuted = _run(name, tr, {k: v[perm] for k, v in te.items()})
    for k in base:
        assert_close(permuted[k], base[k][:, perm], "permutation", f"{name}/{k}")


@pytest.mark.parametrize("name", [n for n in GRADIENT_METHODS if not methods.get(n).couples_blocks])
def test_blocks_are_independent_and_sum_to_total(name, grads64):
    """Per-block methods: each block's scores equal a run on that block alone."""
    tr, te = grads64
    res = _run(name, tr, te)
    total = torch.zeros(9, 4, dtype=torch.float64)
    for k in tr:
        alone = _run(name, {k: tr[k]}, {k: te[k]})
        if name == "cosine":  # cosine normalises by whole-model norms
            break
        assert_close(res[k], alone[k], "block_sum", f"{name}/{k}")
        total += alone[k]
    else:
        assert_close(res.total(), total, "block_sum", name)


@pytest.mark.parametrize("name", ["tracin", "cosine"])
def test_hessian_free_total_equals_concatenated_model(name, grads64):
    tr, te = grads64
    n, m = 9, 4
    cat_tr = {"all": torch.cat([v.reshape(n, -1) for v in tr.values()], 1)}
    cat_te = {"all": torch.cat([v.reshape(m, -1) for v in te.values()], 1)}
    assert_close(_run(name, tr, te).total(), _run(name, cat_tr, cat_te)["all"], "block_sum", name)


# ----------------------------------------------------------------- bad input / parameters


def test_unknown_method_lists_choices(grads64):
    with pytest.raises(ValueError, match="valid choices: .*tracin"):
        _run("nope", *grads64)


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_unknown_parameter_lists_accepted(name, grads64):
    with pytest.raises(ValueError, match="unknown parameter.*bogus.*accepted"):
        _run(name, *grads64, bogus=1)


DAMPED = [n for n in GRADIENT_METHODS if "damping" in methods.get(n).param_names()]


@pytest.mark.parametrize("name", DAMPED)
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "x", True])
def test_bad_damping_raises(name, bad, grads64):
    with pytest.raises(ValueError, match="damping"):
        _run(name, *grads64, damping=bad)


@pytest.mark.parametrize("name", [n for n in DAMPED if n not in ("rrinf",)])
def test_damping_mapping_must_cover_blocks(name, grads64):
    tr, te = grads64
    with pytest.raises(ValueError, match="damping.*missing"):
        _run(name, tr, te, damping={"l0.A": 1.0})
    with pytest.raises(ValueError, match="damping.*block 'l0.A'"):
        _run(name, tr, te, damping={k: (0.0 if k == "l0.A" else 1.0) for k in tr})


@pytest.mark.parametrize("name", GRADIENT_METHODS)
@pytest.mark.parametrize("where", ["train", "test"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_gradients_raise_naming_block(name, where, value, grads64):
    tr, te = grads64
    tr = {k: v.clone() for k, v in tr.items()}
    te = {k: v.clone() for k, v in te.items()}
    (tr if where == "train" else te)["l1.B"][1, 2, 0] = value
    with pytest.raises(ValueError, match=rf"non-finite.*{where}.*'l1.B'"):
        _run(name, tr, te)


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_malformed_inputs_raise(name, grads64):
    tr, te = grads64
    with pytest.raises(ValueError, match="blocks differ"):
        _run(name, tr, {k: v for k, v in te.items() if k != "head"})
    with pytest.raises(ValueError, match="param shape"):
        _run(name, tr, {**te, "head": torch.zeros(4, 5, dtype=torch.float64)})
    with pytest.raises(ValueError, match="sample counts"):
        _run(name, {**tr, "head": tr["head"][:5]}, te)
    with pytest.raises(ValueError, match="floating point"):
        _run(name, {**tr, "head": tr["head"].long()}, te)


def test_spec_flags_and_param_help():
    for name in methods.available():
        spec = methods.get(name)
        assert isinstance(spec.needs_model, bool) and isinstance(spec.couples_blocks, bool)
        for pname, text in spec.param_help().items():
            assert text, f"{name}.{pname} has no help text"
    assert [n for n in methods.available() if methods.get(n).needs_model] in ([], ["ekfac"])
    assert methods.get("exact_joint").couples_blocks and not methods.get("exact_block").couples_blocks


def test_params_dataclass_is_frozen():
    p = methods.make_params("exact_block", damping=0.5)
    with pytest.raises(Exception):
        p.damping = 1.0  # type: ignore[misc]
