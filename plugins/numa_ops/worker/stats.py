"""Statistics over one run's trials: the median, its distribution-free 95% interval, percentiles, stopping.

A run's headline is the **median** of its per-trial throughputs, and its interval is the interval
of that median from order statistics (the binomial, sign-test interval that
``scipy.stats.quantile_test`` gives): its coverage holds for any shape of the trials' distribution
(skewed, two-state, an outlier trial on a busy host), as long as trials are exchangeable. With fewer
than 6 trials no pair of order statistics reaches 95%: the interval is then the range of the trials,
and ``level`` says what it covers.

This is the within-run interval. Trials of one worker share its process, memory and moment; separate
worker processes of the same configuration differ by more. Comparisons use processes as the unit
(``numa_ops.analysis``); the within-run interval says how well one process was measured.

Stopping is two-stage (Stein's idea): ``min_trials`` pilot trials estimate the spread, which fixes the
number of trials before any more are run. Stopping at the first look whose interval happens to be
narrow would pick the looks where the spread was underestimated and cover less than 95%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import stats

LEVEL = 0.95
METHOD = "median of trials, order-statistic (binomial) interval"
# the standard error of a median is about sqrt(pi / 2) times that of a mean (normal trials)
_MEDIAN_SE = math.sqrt(math.pi / 2)


def percentiles(values: list[float]) -> dict[str, float | None]:
    """median, p95, p99, mean, min, max of ``values`` (None where empty)."""
    if not values:
        return {"median": None, "p95": None, "p99": None, "mean": None, "min": None, "max": None}
    arr = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "median": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(arr.mean()),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


@cache
def order_rank(n: int, level: float = LEVEL) -> tuple[int, float]:
    """``(k, coverage)``: the widest-k pair ``(x_(k), x_(n-k+1))`` (1-based) covering the median with
    at least ``level``, and its exact coverage; ``(1, coverage of the range)`` where none reaches it."""
    best = (1, 1 - 2 * 0.5**n)
    for k in range(1, n // 2 + 1):
        coverage = float(1 - 2 * stats.binom.cdf(k - 1, n, 0.5))
        if coverage >= level:
            best = (k, coverage)
    return best


def confidence_interval(values: list[float], level: float = LEVEL) -> dict[str, float | int | str | None]:
    """Median of ``values`` and its order-statistic interval.

    ``rel_half_width`` = half the interval's width over the median; ``level`` is the interval's exact
    coverage (at least the level asked for from 6 values on; below that, the range's own coverage).
    """
    n = len(values)
    arr = np.sort(np.asarray(values, dtype=float))
    out: dict[str, float | int | str | None] = {
        "n": n,
        "median": float(np.median(arr)) if n else None,
        "mean": float(arr.mean()) if n else None,
        "low": None,
        "high": None,
        "rel_half_width": None,
        "level": None,
        "method": METHOD,
    }
    if n >= 2:
        k, coverage = order_rank(n, level)
        low, high = float(arr[k - 1]), float(arr[n - k])
        median = float(np.median(arr))
        out.update(low=low, high=high, level=coverage,
                   rel_half_width=(high - low) / 2 / median if median else math.inf)
    return out


@dataclass(frozen=True)
class StoppingRule:
    """How many trials a run measures: ``min_trials`` pilots, then as many as their spread says the
    ``target`` (relative half-width of the median's interval) needs, within the trial and time budgets."""

    target: float = 0.02
    min_trials: int = 6
    max_trials: int = 20
    max_time_s: float = 120.0

    def trials_needed(self, series: list[list[float]]) -> int:
        """The number of trials, fixed once from the pilots (the largest any tracked mode needs)."""
        need = self.min_trials
        for values in series:
            arr = np.asarray(values[: self.min_trials], dtype=float)
            if len(arr) < 2 or not np.median(arr):
                continue
            rel_sd = float(arr.std(ddof=1) / np.median(arr))
            need = max(need, math.ceil((stats.norm.ppf(0.5 + LEVEL / 2) * _MEDIAN_SE * rel_sd / self.target) ** 2))
        return min(max(need, self.min_trials), self.max_trials)

    def decide(self, series: list[list[float]], elapsed_s: float) -> tuple[bool, str | None]:
        """(stop?, why) for the trials so far; ``series`` holds one list of per-trial values per mode.

        ``planned``: the number the pilots fixed is reached; ``max_trials``: the pilots asked for more
        than the budget allows; ``time_budget``: time ran out first.
        """
        n = min(len(s) for s in series)
        if n < self.min_trials:
            return (True, "time_budget") if elapsed_s >= self.max_time_s and n >= 1 else (False, None)
        unbounded = StoppingRule(self.target, self.min_trials, 10**9, self.max_time_s).trials_needed(series)
        if n >= min(unbounded, self.max_trials):
            return True, "planned" if unbounded <= self.max_trials else "max_trials"
        if elapsed_s >= self.max_time_s:
            return True, "time_budget"
        return False, None
