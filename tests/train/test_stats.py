"""mer.train.stats against hand-computed values, SciPy called directly and a plain-loop permutation test."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score, f1_score

from mer.train.stats import (StatsError, bootstrap_interval, mean_std, paired_runs, paired_samples, t_interval)


def test_mean_std_and_t_interval_by_hand():
    assert mean_std([1, 2, 3, 4]) == pytest.approx((2.5, math.sqrt(5 / 3)))  # ddof=1: sum sq 5 / 3
    assert mean_std([1, 2, 3, 4], ddof=0)[1] == pytest.approx(math.sqrt(5 / 4))
    assert math.isnan(mean_std([0.5])[1])
    # t(0.975, 3) = 3.182446; sem = sqrt(5/3)/2
    iv = t_interval([1, 2, 3, 4])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert (iv.estimate, iv.low, iv.high, iv.n) == pytest.approx((2.5, 2.5 - half, 2.5 + half, 4))
    one = t_interval([0.4])
    assert one.estimate == 0.4 and math.isnan(one.low) and math.isnan(one.high)
    same = t_interval([0.4, 0.4, 0.4])
    assert (same.low, same.high) == pytest.approx((0.4, 0.4))
    with pytest.raises(StatsError, match="non-finite"):
        t_interval([0.1, float("nan")])


def test_paired_runs_is_scipy_ttest_rel_and_wilcoxon():
    a = [0.50, 0.60, 0.70, 0.80, 0.55, 0.65, 0.52]
    b = [0.40, 0.58, 0.61, 0.70, 0.50, 0.61, 0.53]
    r = paired_runs(a, b, "uar")
    assert r.difference == pytest.approx(np.mean(np.subtract(a, b)))
    t = sps.ttest_rel(a, b)
    assert r.p_values["t"] == pytest.approx(t.pvalue)
    assert (r.low, r.high) == pytest.approx(tuple(t.confidence_interval(0.95)))
    assert r.p_values["wilcoxon"] == pytest.approx(sps.wilcoxon(a, b).pvalue)
    assert r.note == ""
    few = paired_runs([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert "cannot go below p = 0.25" in few.note
    assert paired_runs([0.5, 0.6], [0.5, 0.6]).p_values == {"t": 1.0, "wilcoxon": 1.0}
    with pytest.raises(StatsError, match="pair the same folds and seeds"):
        paired_runs([0.5, 0.6], [0.5])


def test_bootstrap_interval_is_scipy_bootstrap_of_the_recomputed_metric():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
    iv = bootstrap_interval(y, p, "macro_f1", n_resamples=500, seed=3)
    assert iv.estimate == pytest.approx(f1_score(y, p, average="macro"))
    ref = sps.bootstrap((y, p), lambda t, q: f1_score(t, q, average="macro", zero_division=0), paired=True,
                        vectorized=False, n_resamples=500, method="BCa",
                        random_state=np.random.default_rng(3)).confidence_interval
    assert (iv.low, iv.high) == pytest.approx((ref.low, ref.high))
    assert iv.low < iv.estimate < iv.high
    # by hand: UAR of [0,0,1,1] vs [0,1,1,1] = (1/2 + 2/2) / 2
    assert bootstrap_interval([0, 0, 1, 1, 0, 1], [0, 1, 1, 1, 0, 1], "uar", n_resamples=200).estimate == \
        pytest.approx(balanced_accuracy_score([0, 0, 1, 1, 0, 1], [0, 1, 1, 1, 0, 1]))
    with pytest.raises(StatsError, match="no sample-level metric"):
        bootstrap_interval(y, p, "auc")


def test_paired_samples_permutation_p_equals_a_plain_loop_over_all_swaps():
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 1])
    a = np.array([0, 1, 2, 0, 1, 1, 0, 2, 2, 1])
    b = np.array([0, 2, 2, 1, 1, 0, 0, 2, 1, 1])
    r = paired_samples(y, a, b, "uar", n_resamples=5000)  # 2^10 = 1024 < 5000: scipy runs the exact test

    def uar(p):
        return balanced_accuracy_score(y, p)

    observed = uar(a) - uar(b)
    extreme = 0
    for swap in itertools.product([False, True], repeat=len(y)):
        s = np.array(swap)
        u, v = np.where(s, b, a), np.where(s, a, b)
        extreme += abs(uar(u) - uar(v)) >= abs(observed) - 1e-12
    assert r.difference == pytest.approx(observed)
    assert r.p_values["permutation"] == pytest.approx(extreme / 2 ** len(y))
    assert r.low <= r.difference <= r.high


def test_paired_samples_separates_a_real_gap_from_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    good = np.where(rng.random(300) < 0.7, y, rng.integers(0, 5, 300))
    bad = np.where(rng.random(300) < 0.3, y, rng.integers(0, 5, 300))
    far = paired_samples(y, good, bad, "macro_f1", n_resamples=500)
    assert far.p_values["permutation"] < 0.01 and far.low > 0
    near = good.copy()
    near[:3] = (near[:3] + 1) % 5  # three predictions changed
    close = paired_samples(y, good, near, "macro_f1", n_resamples=500)
    assert close.p_values["permutation"] > 0.05 and close.low <= 0 <= close.high
    assert paired_samples(y, good, good).note == "identical predictions"
