"""Faults only a running job can see: a diverging fine-tune, and iterative methods that do not converge
(flagged at every gradient scale, and carried into the tables)."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
import torch
from torch import nn

from inflbench.errors import InputError
from inflbench.health import health_columns, health_note
from inflbench.methods import compute_influence
from inflbench.models import ModelFamily
from inflbench.training import TrainArgs, finetune


class _Linear(ModelFamily):
    """A two-class linear model: enough to exercise the fine-tuning loop in milliseconds."""

    name = "linear"

    def build(self, seed):
        torch.manual_seed(seed)
        return nn.Linear(4, 2)

    def encode(self, frame):
        return {"x": torch.tensor(frame[["a", "b", "c", "d"]].to_numpy(), dtype=torch.float32),
                "labels": torch.tensor(frame["label"].to_numpy())}

    def per_sample_loss(self, model, batch):
        return nn.functional.cross_entropy(model(batch["x"]), batch["labels"], reduction="none")

    def predict(self, model, batch):
        return model(batch["x"]).argmax(-1)


def _split(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return pd.DataFrame({**{c: x[:, i].numpy() for i, c in enumerate("abcd")}, "label": (x[:, 0] > 0).long().numpy()})


def _train(lr, epochs=3, train=None, select_by="val_loss"):
    fam = _Linear({})
    train = _split(32, 0) if train is None else train
    enc = {k: fam.encode(f) for k, f in {"train": train, "val": _split(16, 1)}.items()}
    return finetune(fam, fam.build(0), enc["train"], enc["val"],
                    TrainArgs(epochs=epochs, lr=lr, batch_size=8, select_by=select_by), torch.device("cpu"),
                    log=lambda *_: None)


@pytest.mark.parametrize("lr,corrupt", [(3e37, False), (0.1, True)])
def test_non_finite_training_loss_stops_the_fine_tune_with_one_line(lr, corrupt):
    train = _split(32, 0)
    if corrupt:
        train.loc[3, "a"] = math.inf  # one corrupt feature makes its batch's loss non-finite
    with pytest.raises(InputError) as info:
        _train(lr, train=train)
    message = str(info.value)
    assert re.match(r"config key 'train.lr': the training loss at epoch 1, batch \d is (nan|inf)", message), message
    assert "no checkpoint is written" in message and "\n" not in message


def test_kept_epoch_and_reason_are_in_the_curve():
    _, curve = _train(0.5)
    chosen = curve.loc[curve["best"]].iloc[0]
    assert chosen["epoch"] > 0 and chosen["selection"].endswith(": lowest validation loss")
    assert (curve["selection"] != "").sum() == 1
    _, stuck = _train(1e-12)  # nothing learns: the untrained model is kept, and the reason says so
    assert int(stuck.loc[stuck["best"], "epoch"].iloc[0]) == 0
    assert "untrained model is kept" in stuck.loc[stuck["best"], "selection"].iloc[0]


def test_select_by_keeps_the_epoch_the_rule_names():
    state, by_loss = _train(0.5, epochs=6)
    state_acc, by_acc = _train(0.5, epochs=6, select_by="val_accuracy")
    _, by_last = _train(0.5, epochs=6, select_by="last")
    assert by_loss["val_loss"].tolist() == by_acc["val_loss"].tolist()  # same training, only the choice differs
    kept = lambda c: int(c.loc[c["best"], "epoch"].item())  # noqa: E731
    assert kept(by_loss) == int(by_loss["val_loss"].idxmin())
    top = by_acc["val_accuracy"].max()
    assert kept(by_acc) == int(by_acc[by_acc["val_accuracy"] == top]["val_loss"].idxmin())
    assert kept(by_last) == 6 and by_last.loc[by_last["best"], "selection"].item() == "epoch 6 of 6: last epoch"
    assert by_acc.loc[by_acc["best"], "selection"].item().endswith("highest validation accuracy (ties: lower loss)")
    assert all(torch.equal(a, b) for a, b in zip(state.values(), state_acc.values())) == (kept(by_loss) == kept(by_acc))


def test_select_by_accuracy_without_predictions_is_one_line(monkeypatch):
    monkeypatch.setattr(_Linear, "predict", lambda self, model, batch: None)  # a family that predicts no labels
    with pytest.raises(InputError, match=r"^config key 'train.select_by': val_accuracy needs a model family"):
        _train(0.5, select_by="val_accuracy")


def _grads(n, scale, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a": (torch.randn(n, 4, 32, generator=g, dtype=torch.float64) * scale).to(dtype),
            "b": (torch.randn(n, 16, 4, generator=g, dtype=torch.float64) * scale).to(dtype)}


FLAGGED = [("lissa", {"depth": 1}), ("lissa", {"depth": 10}), ("hyperinf", {"x0": 1e-12}),
           ("hyperinf_fim", {"iterations": 1}), ("rrinf", {"iterations": 50})]
CONVERGED = [("lissa", {"depth": 400}), ("hyperinf", {}), ("hyperinf_fim", {}),
             ("rrinf", {"iterations": 3000, "lr": 0.9})]


@pytest.mark.parametrize("scale", [1.0, 1e-20, 1e15])
@pytest.mark.parametrize("method,params", FLAGGED + CONVERGED)
def test_convergence_flag_is_the_same_at_every_gradient_scale(method, params, scale):
    tr, te = _grads(40, 1.0, torch.float32), _grads(5, 1.0, torch.float32, seed=1)
    ref = compute_influence(method, tr, te, **params)
    got = compute_influence(method, {k: v * scale for k, v in tr.items()}, {k: v * scale for k, v in te.items()},
                            **params)
    expected = (method, params) in CONVERGED
    assert ref.meta["converged"] is expected, ref.meta.get("convergence")
    assert got.meta["converged"] is expected, got.meta.get("convergence")
    assert bool(got.meta["convergence"]) is not expected
    if not expected:  # e.g. a fixed x0 is not scale-free; the flag is what must not change
        return
    scores_ref, scores_got = ref.total().double(), got.total().double()
    assert torch.allclose(scores_got, scores_ref, rtol=1e-3, atol=1e-6 * float(scores_ref.abs().max()))


def test_converged_methods_meet_their_estimand():
    tr, te = _grads(40, 1.0, torch.float64), _grads(5, 1.0, torch.float64, seed=1)
    block, joint = compute_influence("exact_block", tr, te).total(), compute_influence("exact_joint", tr, te).total()
    for (method, params), ref in zip(CONVERGED, (block, None, block, joint)):
        if ref is None:  # hyperinf (GFIM) has its own estimand
            continue
        err = float((compute_influence(method, tr, te, **params).total() - ref).norm() / ref.norm())
        assert err < 0.1, (method, err)


def test_lissa_divergence_is_visible_after_one_step():
    tr, te = _grads(40, 10.0, torch.float64), _grads(5, 10.0, torch.float64, seed=1)  # lambda_max(G) >> 2
    with pytest.warns(RuntimeWarning, match="diverged"):
        res = compute_influence("lissa", tr, te, depth=1, variant="published")
    assert res.meta["diverged"] and not res.meta["converged"]


def test_explicit_float32_refused_where_it_would_underflow():
    tr, te = _grads(10, 1e-20, torch.float32), _grads(3, 1e-20, torch.float32, seed=1)
    with pytest.raises(ValueError, match=r"parameter 'dtype': float32 cannot hold .* block 'a'"):
        compute_influence("lissa", tr, te, dtype="float32")


def test_flags_reach_the_table_note():
    meta = {"meta.converged": False, "meta.convergence": "not converged: final residual 5.66 > 0.01",
            "best_epoch": "0", "selection": "epoch 0 of 5: ..."}
    row = health_columns(meta)
    assert row["converged"] is False and row["best_epoch"] == 0
    note = health_note(row)
    assert note.startswith("ranked on a flagged result: not converged: final residual 5.66")
    assert "untrained model" in note
    assert health_note(health_columns({"meta.converged": True, "best_epoch": "3"})) == ""


def test_diverging_fine_tune_job_leaves_one_line_a_logged_traceback_and_no_outputs(tmp_path, capfd):
    """Through the job entry point, as the finetune rule runs it."""
    from inflbench.jobs import call

    def stage(inputs, outputs, params):
        (tmp_path / "adapter.safetensors").write_text("partial")  # as if a previous write had happened
        _train(params["lr"])

    log = tmp_path / "logs" / "finetune.log"
    with pytest.raises(SystemExit):
        call(stage, {}, {"adapter": str(tmp_path / "adapter.safetensors")}, {"lr": 3e37}, log)
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("inflbench: invalid input: config key 'train.lr': the training "
                                                   "loss at epoch"), lines
    assert "Traceback" in log.read_text() and "TrainingDiverged" in log.read_text()
    assert not (tmp_path / "adapter.safetensors").exists()
