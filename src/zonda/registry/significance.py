"""The paired significance test of the promotion gate: is a challenger's improvement over the champion real?

Both models are scored on the same init times ``i = 1..n``; the test looks at
the per-init *improvements* ``d_i`` (champion score minus challenger score for
errors such as RMSE, challenger minus champion for the ACC: positive means
the challenger is better), as WeatherBench2-style scorecards mark significant
differences on paired per-init scores. :func:`paired_test` returns:

* ``mean``: ``mean_i d_i``;
* ``ci_low``, ``ci_high``: the two-sided ``confidence`` interval of that mean,
  from ``method``: ``bootstrap`` (percentile interval of the means of
  ``n_resamples`` paired resamples of the init times, drawn with
  ``numpy.random.default_rng(seed)``, via :func:`scipy.stats.bootstrap`) or
  ``t`` (Student's t interval of the paired differences, as
  :func:`scipy.stats.ttest_rel`);
* ``p_value``: the two-sided paired t-test p-value (reported for both methods);
* ``bootstrap_fraction``: the fraction of bootstrap resample means ``<= 0``
  (how often a resampled test period shows no improvement).

The improvement is significant at ``confidence`` when the interval lies
entirely above 0; a significant loss when it lies entirely below. Init times
are treated as independent pairs; inits closer than the forecast's
decorrelation time (a few days) make the interval optimistic, so space them
(``evaluation.init_every_hours``) or raise ``confidence``.

When all ``d_i`` are equal (zero spread) the interval is that one value, the
p-value is 0 if it is non-zero and 1 if it is zero; with ``n < 2`` nothing is
significant (the interval is ``(-inf, inf)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Method = Literal["bootstrap", "t"]


@dataclass(frozen=True)
class PairedTest:
    """The result of :func:`paired_test` (see the module docstring)."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    bootstrap_fraction: float
    method: str
    confidence: float

    @property
    def significantly_better(self) -> bool:
        return self.ci_low > 0

    def significantly_below(self, threshold: float) -> bool:
        """Whether the whole interval lies below ``threshold`` (``-tolerance * |champion|`` for a loss)."""
        return self.ci_high < threshold


def paired_test(
    improvement: np.ndarray,
    *,
    confidence: float,
    method: Method = "bootstrap",
    n_resamples: int = 10_000,
    seed: int = 0,
) -> PairedTest:
    """The paired test of ``(n,)`` per-init improvements (finite floats; positive: challenger better)."""
    d = np.asarray(improvement, dtype=np.float64).reshape(-1)  # (n,)
    if not np.isfinite(d).all():
        raise ValueError(f"per-init improvements must be finite; {int((~np.isfinite(d)).sum())} of {d.size} are not")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} is not in (0, 1)")
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return PairedTest(n, mean, -math.inf, math.inf, math.nan, math.nan, method, confidence)
    if np.ptp(d) <= 1e-12 * float(np.abs(d).max()):  # zero spread (up to rounding): the t statistic is undefined
        value = mean
        return PairedTest(n, value, value, value, 0.0 if value != 0 else 1.0, float(value <= 0), method, confidence)
    t = stats.ttest_1samp(d, 0.0)  # = stats.ttest_rel(champion, challenger) for errors
    boot = stats.bootstrap(
        (d,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
        rng=np.random.default_rng(seed), vectorized=True,
    )
    fraction = float(np.mean(boot.bootstrap_distribution <= 0))
    if method == "bootstrap":
        low, high = boot.confidence_interval
    elif method == "t":
        low, high = t.confidence_interval(confidence)
    else:
        raise ValueError(f"unknown paired test method {method!r} (bootstrap or t)")
    return PairedTest(n, mean, float(low), float(high), float(t.pvalue), fraction, method, confidence)
