"""EK-FAC through kronfluence on a tiny MLP vs exact damped-Fisher influence (skipped without kronfluence)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from tolerances import TOL

from inflbench import methods
from inflbench.methods import compute_influence
from inflbench.methods.ekfac import ekfac_influence, kronfluence_available

pytestmark = [
    pytest.mark.skipif(not kronfluence_available(), reason="kronfluence not installed"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # kronfluence's torch.cuda.amp use
]


def _setup(seed=0, n=48, m=6):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(n + m, 4, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    y[:4] = (y[:4] + 1) % 3  # a few mislabelled points
    batches = lambda lo, hi, bs: [{"x": x[i : min(i + bs, hi)], "y": y[i : min(i + bs, hi)]} for i in range(lo, hi, bs)]
    return model, batches(0, n, 16), batches(n, n + m, 16)


def per_sample_loss(model, batch):
    return nn.functional.cross_entropy(model(batch["x"]), batch["y"], reduction="none")


def per_module_grads(model, batches):
    """Per-sample gradients of each Linear (weight and bias together) -> {module: (N, d)}."""
    out = {"0": [], "2": []}
    for b in batches:
        for i in range(len(b["y"])):
            model.zero_grad()
            per_sample_loss(model, {"x": b["x"][i : i + 1], "y": b["y"][i : i + 1]}).sum().backward()
            for name in out:
                mod = model[int(name)]
                out[name].append(torch.cat([mod.weight.grad.flatten(), mod.bias.grad.flatten()]))
    return {k: torch.stack(v) for k, v in out.items()}


def test_ekfac_registered_as_model_method():
    spec = methods.get("ekfac")
    assert spec.needs_model and not spec.couples_blocks  # block-diagonal: one entry per module
    assert spec.missing_dependency() is None
    assert "ekfac" not in methods.available(include_model_methods=False)
    with pytest.raises(ValueError, match="needs the model"):
        compute_influence("ekfac", {"a": torch.zeros(2, 3)}, {"a": torch.zeros(1, 3)})


def _corr(a, b):
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_ekfac_matches_exact_damped_fisher_on_tiny_mlp():
    model, train, test = _setup()
    damping = 1e-2
    res = ekfac_influence(model, train, test, per_sample_loss, damping=damping)
    s = res["total"]
    assert s.shape == (48, 6) and s.dtype == torch.float64 and bool(torch.isfinite(s).all())
    # the model must be untouched (deep copy)
    assert all(p.requires_grad for p in model.parameters())
    tr = per_module_grads(model, train)
    te = per_module_grads(model, test)
    exact = compute_influence("exact_block", tr, te, damping=damping).total()
    corr = _corr(s, exact)
    assert corr > TOL["ekfac_min_corr"]["value"], corr
    # with little damping EK-FAC's eigenbasis error shows, but it still beats the Hessian-free
    # and DataInf approximations of the same estimand
    small = ekfac_influence(model, train, test, per_sample_loss, damping=1e-3)["total"]
    exact_small = compute_influence("exact_block", tr, te, damping=1e-3).total()
    c_ekfac = _corr(small, exact_small)
    assert c_ekfac > _corr(compute_influence("tracin", tr, te).total(), exact_small) + 0.1
    assert c_ekfac > _corr(compute_influence("datainf", tr, te, damping=1e-3).total(), exact_small) + 0.1
    # sign convention: self-influence is negative (helpful)
    self_inf = ekfac_influence(model, train, train, per_sample_loss, damping=damping)["total"]
    assert bool((self_inf.diagonal() < 0).all())


def test_ekfac_runs_where_the_model_is_after_a_run_elsewhere():
    """kronfluence's device lives in a process-wide state: a run on a GPU model must not send a later CPU
    model's run there (the state is set as a GPU run leaves it; no GPU needed)."""
    from kronfluence.utils.state import State

    model, train, test = _setup()
    State._reset_state()
    State(cpu=False)
    State._shared_state["device"] = torch.device("meta")  # stands in for cuda:0
    res = ekfac_influence(model, train, test, per_sample_loss, damping=1e-2)["total"]
    assert State._shared_state["cpu"] is True and State._shared_state["device"] == torch.device("cpu")
    State._reset_state()
    assert torch.allclose(res, ekfac_influence(model, train, test, per_sample_loss, damping=1e-2)["total"])


def test_ekfac_module_subset_and_validation():
    model, train, test = _setup()
    s = ekfac_influence(model, train, test, per_sample_loss, module_names=["2"], damping=1e-2)["total"]
    tr = per_module_grads(model, train)
    te = per_module_grads(model, test)
    exact = compute_influence("exact_block", {"2": tr["2"]}, {"2": te["2"]}, damping=1e-2)["2"]
    corr = float(torch.corrcoef(torch.stack([s.flatten(), exact.flatten()]))[0, 1])
    assert corr > TOL["ekfac_min_corr"]["value"], corr
    with pytest.raises(ValueError, match="damping"):
        ekfac_influence(model, train, test, per_sample_loss, damping=-1.0)
