"""Progress lines: totals, percentages and ETA, at most one per interval plus the last."""

from __future__ import annotations

from inflbench.progress import Progress, track


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_reports_totals_and_eta_every_interval():
    clock, lines = Clock(), []
    progress = Progress("fine-tune", 10, "steps", every=5.0, log=lines.append, clock=clock)
    for step in range(10):
        clock.now += 2.0  # two seconds a step
        progress.update(note=f"(epoch {step // 5 + 1}/2)")
    assert lines == ["fine-tune: 3/10 steps (30%), 6s elapsed, ETA 14s (epoch 1/2)",
                     "fine-tune: 6/10 steps (60%), 12s elapsed, ETA 8s (epoch 2/2)",
                     "fine-tune: 9/10 steps (90%), 18s elapsed, ETA 2s (epoch 2/2)",
                     "fine-tune: 10/10 steps (100%), 20s elapsed, ETA 0s (epoch 2/2)"]


def test_progress_without_a_total_and_long_durations():
    clock, lines = Clock(), []
    progress = Progress("retraining", None, "runs", every=0, log=lines.append, clock=clock)
    clock.now = 125.0
    progress.update()
    assert lines == ["retraining: 1 runs, 2m05s elapsed"]


def test_track_yields_every_item_and_reports_the_end():
    lines = []
    assert list(track(iter(range(4)), "gradients val", total=4, unit="batches", every=1e9, log=lines.append)) \
        == [0, 1, 2, 3]
    assert len(lines) == 1 and lines[0].startswith("gradients val: 4/4 batches (100%)")
    assert list(track([1, 2], "x", every=1e9, log=lines.append)) == [1, 2] and lines[-1].startswith("x: 2/2 (100%)")


def test_rrinf_reports_its_iterations(caplog):
    import logging

    import torch

    from inflbench.methods import compute_influence

    train = {"b": torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(0))}
    test = {"b": torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(1))}
    with caplog.at_level(logging.INFO, logger="inflbench.progress"):
        compute_influence("rrinf", train, test, iterations=7, sampling="full")
        compute_influence("lissa", train, test, depth=5)
    lines = [r.getMessage() for r in caplog.records]
    assert "RRInf: 7/7 iterations (100%)" in lines[0]
    assert any(line.startswith("LiSSA (1 blocks at once): 5/5 iterations (100%)") for line in lines)
