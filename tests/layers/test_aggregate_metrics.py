"""Aggregation operators and no-retraining metrics against brute-force / hand-computed references."""

import itertools

import numpy as np
import pandas as pd
import pytest

from inflbench import metrics
from inflbench.studies.layer_choice import aggregate as ag
from inflbench.studies.layer_choice import metrics as lm
from inflbench.studies.layer_choice import stats as st


def brute_rank(cols):
    """Average over columns of 1 + #strictly-less-harmful + (#ties incl. self - 1) / 2."""
    n, m = cols.shape
    out = np.zeros(n)
    for j in range(m):
        for i in range(n):
            less = (cols[:, j] < cols[i, j]).sum()
            ties = (cols[:, j] == cols[i, j]).sum()
            out[i] += 1 + less + (ties - 1) / 2
    return out / m


def brute_vote(cols, k):
    n, m = cols.shape
    out = np.zeros(n)
    for j, i in itertools.product(range(m), range(n)):
        out[i] += max(k - (cols[:, j] > cols[i, j]).sum(), 0)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_and_vote_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    cols = rng.integers(-3, 4, size=(9, 5)).astype(float)  # many ties
    np.testing.assert_allclose(ag.rank_aggregate(cols), brute_rank(cols))
    for k in (1, 3, 9, 12):
        np.testing.assert_allclose(ag.vote_aggregate(cols, k), brute_vote(cols, k))


def test_hand_example():
    cols = np.array([[3.0, 0.0], [1.0, 2.0], [2.0, 1.0]])  # sample 0 most harmful in column 0 only
    np.testing.assert_allclose(ag.mean_aggregate(cols), [1.5, 1.5, 1.5])
    np.testing.assert_allclose(ag.rank_aggregate(cols), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(ag.vote_aggregate(cols, 1), [1, 1, 0])
    np.testing.assert_allclose(ag.vote_aggregate(cols, 2), [2, 2, 2])  # col0: 2,0,1  col1: 0,2,1


def test_vote_is_robust_to_one_dominating_column():
    cols = np.array([[1.0, 1.0, 1000.0], [2.0, 2.0, 0.0], [0.0, 0.0, -1.0]])
    assert np.argmax(ag.mean_aggregate(cols)) == 0
    assert np.argmax(ag.vote_aggregate(cols, 1)) == 1 and np.argmax(ag.rank_aggregate(cols)) == 1


def test_group_scores_uses_blocks_and_correct_columns():
    scores = {"a.layer.0.q": np.array([[1.0, 9.0], [2.0, -9.0]]), "classifier": np.array([[0.0, 0.0], [5.0, 5.0]]),
              "total": np.zeros((2, 2))}
    blocks = ag.match_blocks([r"layer\.0\."], scores)
    assert blocks == ["a.layer.0.q"]
    correct = np.array([True, False])
    np.testing.assert_allclose(ag.group_scores(scores, blocks, "mean", correct), [5.0, -3.5])
    np.testing.assert_allclose(ag.group_scores(scores, blocks, "rank", correct), [1.0, 2.0])
    np.testing.assert_allclose(ag.group_scores(scores, blocks + ["classifier"], "vote", correct, 1), [0, 2])
    with pytest.raises(ValueError, match="no validation column"):
        ag.group_scores(scores, blocks, "rank", np.array([False, False]))


def test_ndr_hand_values():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0])
    flipped = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1], bool)
    assert metrics.ndr_at(scores, flipped, 0.3) == pytest.approx(2 / 3)
    assert metrics.ndr_at(scores, flipped, 1.0) == 1.0
    # cumulative found after i removals: 1,1,2,2,2,2,2,2,2,3 -> mean / 3
    assert metrics.ndr_auc(scores, flipped) == pytest.approx(np.mean([1, 1, 2, 2, 2, 2, 2, 2, 2, 3]) / 3)
    curve = metrics.ndr_curve(scores, flipped, 11)
    assert curve["ndr"].iloc[3] == pytest.approx(2 / 3) and curve["ndr"].iloc[-1] == 1.0
    hist = lm.noise_histogram(scores, flipped, bins=5)
    assert hist["n_flipped"].tolist() == [1, 1, 0, 0, 1] and hist["n_samples"].sum() == 10


def test_ndr_auc_perfect_and_random():
    flipped = np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)
    # perfect order: NDR(i/8) = 1/2, 1, 1, ... -> mean 7.5 / 8
    assert metrics.ndr_auc(flipped.astype(float), flipped) == pytest.approx(7.5 / 8)
    assert metrics.ndr_auc(-flipped.astype(float), flipped) == pytest.approx((0 * 6 + 0.5 + 1) / 8)
    rng = np.random.default_rng(0)
    flips = rng.random(4000) < 0.2
    assert metrics.ndr_auc(rng.random(4000), flips) == pytest.approx(0.5, abs=0.03)


def test_cancellation():
    g = np.array([[1.0, 1.0, 0.0, 2.0], [1.0, -1.0, 0.0, -1.0]])
    c = lm.cancellation(g)
    assert c[0] == 1.0 and np.isinf(c[1]) and np.isnan(c[2]) and c[3] == pytest.approx(3.0)
    s = lm.cancellation_summary(c, extreme=2.5)
    assert s["share_inf"] == pytest.approx(1 / 3) and s["share_extreme"] == pytest.approx(2 / 3)
    assert s["median"] == pytest.approx(3.0) and s["mean"] == pytest.approx(2.0)
    # layer level: (||(1,1,0,2)|| + ||(1,-1,0,-1)||) / ||(2,0,0,1)||
    assert lm.layer_cancellation(g) == pytest.approx((np.sqrt(6) + np.sqrt(3)) / np.sqrt(5))


def _runs():
    acc = {"A": [0.9, 0.8, 0.7], "B": [0.8, 0.8, 0.6], "C": [0.5, 0.9, 0.5]}
    return pd.DataFrame([{"config": c, "task": "t", "seed": s, "accuracy": a}
                         for c, v in acc.items() for s, a in enumerate(v)])


def test_win_rate_rank_pareto():
    runs = _runs()
    w = st.win_rate_matrix(runs)
    assert w.loc["A", "B"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert w.loc["B", "A"] == pytest.approx(0.5 / 3)
    assert w.loc["A", "C"] == pytest.approx(2 / 3)
    r = st.mean_rank(runs).set_index("config")
    # seed0: A1 B2 C3; seed1: C1 A2.5 B2.5; seed2: A1 B2 C3
    assert r.loc["A", "mean_rank"] == pytest.approx(4.5 / 3) and r.loc["C", "mean_rank"] == pytest.approx(7 / 3)
    p = st.pareto_front(w, 0.75).set_index("config")
    assert p.loc["A", "pareto"] and not p.loc["B", "pareto"] and p.loc["A", "dominates"] == 1


def test_wilcoxon_and_spearman():
    rng = np.random.default_rng(0)
    rows = [{"config": c, "task": "t", "seed": s, "accuracy": rng.random() + (0.5 if c == "good" else 0)}
            for s in range(12) for c in ("good", "ref")]
    res = st.wilcoxon_against(pd.DataFrame(rows), "ref")
    assert res.loc[0, "p_value"] < 0.01 and res.loc[0, "n"] == 12
    rho, p, n = st.spearman([1, 2, 3, 4], [2, 4, 6, 9])
    assert rho == pytest.approx(1.0) and n == 4
    assert np.isnan(st.spearman([1, 1, 1], [1, 2, 3])[0])
