"""The gate's paired test against a hand computation, scipy's paired t-test and an exhaustive bootstrap."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from zonda.registry.significance import paired_test

CHAMPION = np.array([10.0, 12.0, 9.5, 13.0, 10.2])  # per-init RMSE of the champion
CHALLENGER = np.array([9.0, 10.0, 10.0, 10.0, 10.0])  # and of the challenger, on the same inits
D = CHAMPION - CHALLENGER  # improvements [1, 2, -0.5, 3, 0.2]


def test_t_interval_and_p_value_match_a_hand_computation_and_ttest_rel():
    # by hand: mean 5.7/5 = 1.14; squared deviations sum to 7.792, so s^2 = 7.792/4 and se = s/sqrt(5);
    # t = 1.14/se = 1.8264 with 4 degrees of freedom; t_{0.975,4} = 2.776445 (tables)
    se = math.sqrt(7.792 / 4 / 5)
    result = paired_test(D, confidence=0.95, method="t")
    assert result.n == 5 and result.mean == pytest.approx(1.14)
    assert 1.14 / se == pytest.approx(1.8264, abs=1e-4)
    assert (result.ci_low, result.ci_high) == pytest.approx((1.14 - 2.776445 * se, 1.14 + 2.776445 * se), abs=1e-5)
    reference = stats.ttest_rel(CHAMPION, CHALLENGER)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert result.p_value == pytest.approx(2 * stats.t.sf(1.14 / se, 4), rel=1e-12)
    assert not result.significantly_better  # the interval straddles 0


def test_bootstrap_matches_the_exhaustive_bootstrap_distribution():
    """All 5**5 equally likely resamples of the 5 inits give the exact bootstrap distribution of the mean."""
    exact = np.array([D[list(idx)].mean() for idx in itertools.product(range(5), repeat=5)])  # (3125,)
    result = paired_test(D, confidence=0.9, method="bootstrap", n_resamples=20_000, seed=3)
    assert result.bootstrap_fraction == pytest.approx(np.mean(exact <= 0), abs=0.01)  # MC s.e. about 0.002
    assert np.quantile(exact, 0.04) <= result.ci_low <= np.quantile(exact, 0.06)
    assert np.quantile(exact, 0.94) <= result.ci_high <= np.quantile(exact, 0.96)
    assert result.ci_low > 0 and result.significantly_better  # at 90 % the bootstrap calls it (the t-test does not)
    assert result.p_value == pytest.approx(stats.ttest_rel(CHAMPION, CHALLENGER).pvalue)


def test_the_bootstrap_is_reproducible_from_its_seed():
    a = paired_test(D, confidence=0.95, seed=7)
    assert a == paired_test(D, confidence=0.95, seed=7)
    assert a.bootstrap_fraction != paired_test(D, confidence=0.95, seed=8).bootstrap_fraction


def test_degenerate_samples():
    constant = paired_test(np.full(6, 0.5), confidence=0.95)
    assert (constant.ci_low, constant.ci_high, constant.p_value, constant.bootstrap_fraction) == (0.5, 0.5, 0.0, 0.0)
    assert constant.significantly_better
    zero = paired_test(np.zeros(6), confidence=0.95, method="t")
    assert not zero.significantly_better and zero.p_value == 1.0 and zero.bootstrap_fraction == 1.0
    single = paired_test(np.array([4.0]), confidence=0.95)
    assert not single.significantly_better and not single.significantly_below(0.0)
    with pytest.raises(ValueError, match="1 of 3 are not"):
        paired_test(np.array([1.0, math.nan, 2.0]), confidence=0.95)
    with pytest.raises(ValueError, match="confidence"):
        paired_test(D, confidence=1.5)
