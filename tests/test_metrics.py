import numpy as np
import pytest

from inflbench.metrics import detection_auc, detection_curve, detection_rate_at


def test_perfect_and_reversed_rankings():
    flipped = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    scores = np.arange(10, 0, -1.0)
    assert detection_auc(scores, flipped) == 1.0
    assert detection_auc(-scores, flipped) == 0.0
    curve = detection_curve(scores, flipped, points=11)
    assert curve["fraction_detected"].tolist()[:3] == [0.0, 0.5, 1.0]
    assert curve["fraction_detected"].iloc[-1] == 1.0
    assert detection_rate_at(scores, flipped, 0.2) == 1.0
    assert detection_rate_at(scores, flipped, 0.4) == 1.0  # a recall (HyperINF rt(p)): both flips found
    assert detection_rate_at(-scores, flipped, 0.5) == 0.0 and detection_rate_at(-scores, flipped, 0.9) == 0.5


def test_curve_matches_bruteforce():
    rng = np.random.default_rng(0)
    scores, flipped = rng.normal(size=37), rng.random(37) < 0.3
    curve = detection_curve(scores, flipped, points=9)
    order = np.argsort(-scores)
    for _, row in curve.iterrows():
        k = int(row["n_inspected"])
        assert row["fraction_detected"] == pytest.approx(flipped[order[:k]].sum() / flipped.sum())


def test_shape_mismatch_and_single_class():
    with pytest.raises(ValueError, match="differ in shape"):
        detection_curve(np.zeros(3), np.zeros(4, bool))
    assert np.isnan(detection_auc(np.zeros(3), np.zeros(3, bool)))
