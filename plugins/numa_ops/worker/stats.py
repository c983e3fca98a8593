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
number of trials before any more are run (sized on the order-statistic interval that is reported, at the
spread's upper 80% bound). Stopping at the first look whose interval happens to be narrow would pick the
looks where the spread was underestimated and cover less than 95%.

The median stays the headline. Trials that are exchangeable keep its interval's coverage under the
stopping rule (two-state mixtures included). Where the host's CPU speed flips between two states over a
few trials (lag-1 autocorrelation ~0.6), no within-run interval built on exchangeable trials covers: a
20% trimmed mean is steadier there (run-to-run sd 4.3% against the median's 5.4% at 20 trials, bias
-0.4% against -3.2% of its own stationary value), but its interval would fail the same way. Such hosts
are measured by paired arms: the mean of ABBA block differences (``paired_interval``), whose blocks are
nearly independent (lag-1 correlation of the differences ~0.05).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import special  # the distributions' functions alone: scipy.stats costs a worker a second to import

LEVEL = 0.95
METHOD = "median of trials, order-statistic (binomial) interval"
# the standard error of a median is about sqrt(pi / 2) times that of a mean (normal trials)
PAIRED_METHOD = "mean of ABBA block differences of ln rate, t interval over blocks"
POWER = 0.80
ASSURANCE = 0.80  # plans are sized on the spread's upper bound at this confidence
PLAN_CAP = 100_000


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
    ks = np.arange(1, n // 2 + 1)
    coverage = 1 - 2 * special.bdtr(ks - 1, n, 0.5)
    ok = np.flatnonzero(coverage >= level)
    if not len(ok):
        return 1, 1 - 2 * 0.5**n
    return int(ks[ok[-1]]), float(coverage[ok[-1]])


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


@cache
def t_quantile(q: float, df: int) -> float:
    """Student's t quantile (``scipy.stats.t.ppf(q, df)``), remembered."""
    return float(special.stdtrit(df, q))


@cache
def _chi2_quantile(q: float, df: int) -> float:
    return float(special.chdtri(df, 1 - q))


def sd_bound(values: Sequence[float], ddof: int = 1, assurance: float = ASSURANCE) -> float:
    """An upper confidence bound (at ``assurance``) on the standard deviation behind ``values``
    (chi-square, ``len(values) - ddof`` degrees of freedom): a plan sized on it is big enough that often."""
    arr = np.asarray(values, dtype=float)
    df = len(arr) - ddof
    if df < 1:
        return math.inf
    sd = float(np.sqrt(np.sum((arr - arr.mean()) ** 2) / df))
    return sd * math.sqrt(df / _chi2_quantile(1 - assurance, df))


@cache
def order_half_width(n: int, level: float = LEVEL) -> float:
    """Expected half-width of the order-statistic interval of the median of ``n`` normal values, in
    standard deviations: the expected ``n - k + 1``-th normal order statistic (Blom's approximation)."""
    k = order_rank(n, level)[0]
    return float(special.ndtri((n - k + 1 - 0.375) / (n + 0.25)))


def _first_n(limit: float, factor: Callable[[int], float], start: int, cap: int = PLAN_CAP) -> int:
    """The smallest ``n >= start`` with ``factor(n) <= limit`` (``cap`` where none is below it)."""
    if not math.isfinite(limit) or limit <= 0:
        return cap
    for n in range(start, cap):
        if factor(n) <= limit:
            return n
    return cap


@dataclass(frozen=True)
class StoppingRule:
    """How many trials a run measures: ``min_trials`` pilots, then as many as the reported interval (the
    median's order-statistic interval) needs to reach ``target`` (its relative half-width), within the
    trial and time budgets.

    The pilots' spread, taken at its upper ``assurance`` bound, and the expected half-width of the
    order-statistic interval at n trials fix the number of trials. Where the planned number is reached
    and an interval is still wider than the target, the plan is made again from all trials so far (it
    only grows). A run never stops because one look happened to be narrow before its planned number.
    """

    target: float = 0.02
    min_trials: int = 6
    max_trials: int = 20
    max_time_s: float = 120.0
    assurance: float = ASSURANCE

    def _plan(self, values: list[float], start: int, cap: int) -> int:
        arr = np.asarray(values, dtype=float)
        middle = float(np.median(arr)) if len(arr) else 0.0
        if len(arr) < 2 or not middle:
            return start
        limit = self.target * abs(middle) / sd_bound(arr, 1, self.assurance)
        return _first_n(limit, order_half_width, start, max(start, cap))

    def _wide(self, series: list[list[float]], n: int) -> bool:
        for values in series:
            hw = confidence_interval(values[:n])["rel_half_width"]
            if hw is not None and hw > self.target:
                return True
        return False

    def trials_needed(self, series: list[list[float]], limit: int | None = None) -> int:
        """The number of trials the trials so far plan: fixed by the pilots, grown again only where the
        planned number was reached with an interval wider than the target (the largest any mode needs).
        At most ``limit`` (default ``max_trials``)."""
        limit = self.max_trials if limit is None else limit
        n0 = self.min_trials
        need = max([n0] + [self._plan(values[:n0], n0, limit) for values in series])
        have = min(len(s) for s in series)
        while need < limit and have >= need and self._wide(series, need):
            need = max([need + 1] + [self._plan(values[:need], need + 1, limit) for values in series])
        return min(need, limit)

    def decide(self, series: list[list[float]], elapsed_s: float) -> tuple[bool, str | None]:
        """(stop?, why) for the trials so far; ``series`` holds one list of per-trial values per mode.

        ``planned``: the number the trials planned is reached; ``max_trials``: they asked for more
        than the budget allows; ``time_budget``: time ran out first.
        """
        n = min(len(s) for s in series)
        if n < self.min_trials:
            return (True, "time_budget") if elapsed_s >= self.max_time_s and n >= 1 else (False, None)
        need = self.trials_needed(series, limit=self.max_trials + 1)
        if n >= min(need, self.max_trials):
            return True, "planned" if need <= self.max_trials else "max_trials"
        if elapsed_s >= self.max_time_s:
            return True, "time_budget"
        return False, None


def paired_interval(
    diffs: Sequence[float], level: float = LEVEL, power: float = POWER, df_lost: int = 1
) -> dict[str, float | int | str | None]:
    """The paired estimate from block differences of ln rate (arm minus reference) and its t interval.

    ``estimate``: the mean difference (ln ratio); ``sd``: their standard deviation on ``df = n -
    df_lost`` degrees of freedom (2 after a control adjustment, whose slope costs one); ``low``/``high``/
    ``ratio`` on the ratio scale (arm rate over reference rate); ``half_width`` = (high - low) / 2 /
    ratio; ``mde``: the relative difference found with ``power`` by a two-sided test at ``1 - level``.
    ``verdict``: "measured" where the interval excludes a ratio of 1, else "not detectable".
    """
    arr = np.asarray(diffs, dtype=float)
    n = len(arr)
    df = n - df_lost
    out: dict[str, float | int | str | None] = {
        "n": n, "estimate": float(arr.mean()) if n else None, "sd": None, "df": df if df >= 1 else None,
        "low_ln": None, "high_ln": None, "ratio": float(np.exp(arr.mean())) if n else None, "low": None,
        "high": None, "half_width": None, "mde": None, "verdict": "not detectable", "method": PAIRED_METHOD,
    }
    if df < 1:
        return out
    mean = float(arr.mean())
    sd = float(np.sqrt(np.sum((arr - mean) ** 2) / df))
    se = sd / math.sqrt(n)
    h = t_quantile(0.5 + level / 2, df) * se
    low_ln, high_ln = mean - h, mean + h
    out.update(
        sd=sd, low_ln=low_ln, high_ln=high_ln, low=math.exp(low_ln), high=math.exp(high_ln), half_width=math.sinh(h),
        mde=math.expm1((t_quantile(0.5 + level / 2, df) + t_quantile(power, df)) * se),
        verdict="measured" if low_ln > 0 or high_ln < 0 else "not detectable",
    )
    return out


def adjusted_block_diffs(
    log_rates: dict[int, list[float]], log_controls: dict[int, list[float]], block_of: dict[int, list[int]],
    arm: int, ref: int,
) -> tuple[list[float], float]:
    """Block differences of ln rate after the control adjustment, and the slope.

    Within the process, ln trial rate is regressed on ln trial control with an arm indicator (one slope
    pooled over the arms given); each trial's ln rate loses ``slope * (ln control - mean ln control)``;
    the block differences (mean of ``arm``'s adjusted trials in a block minus ``ref``'s) follow. Valid
    only where the arm cannot move the control (memory arms, not thread arms).
    """
    arms = sorted(log_rates)
    for a in arms:
        if not len(log_rates[a]) == len(log_controls.get(a, [])) == len(block_of.get(a, [])):
            raise ValueError(f"arm {a}: log_rates, log_controls and block_of differ in length")
    if arm not in log_rates or ref not in log_rates:
        raise ValueError(f"arms {arm} and {ref} need trials; there are {arms}")
    y = {a: np.asarray(log_rates[a], dtype=float) for a in arms}
    x = {a: np.asarray(log_controls[a], dtype=float) for a in arms}
    sxy = sum(float(np.sum((x[a] - x[a].mean()) * (y[a] - y[a].mean()))) for a in arms if len(x[a]))
    sxx = sum(float(np.sum((x[a] - x[a].mean()) ** 2)) for a in arms if len(x[a]))
    slope = sxy / sxx if sxx > 0 else 0.0
    center = float(np.concatenate([x[a] for a in arms]).mean())

    def block_means(a: int) -> dict[int, float]:
        adjusted = y[a] - slope * (x[a] - center)
        blocks = np.asarray(block_of[a])
        return {int(b): float(adjusted[blocks == b].mean()) for b in np.unique(blocks)}

    arm_means, ref_means = block_means(arm), block_means(ref)
    return [arm_means[b] - ref_means[b] for b in sorted(arm_means) if b in ref_means], slope


def adjusted_paired_interval(
    log_rates: dict[int, list[float]], log_controls: dict[int, list[float]], block_of: dict[int, list[int]],
    arm: int, ref: int, level: float = LEVEL, power: float = POWER,
) -> dict[str, float | int | str | None]:
    """:func:`paired_interval` of the control-adjusted block differences (``df = n - 2``), plus ``slope``."""
    diffs, slope = adjusted_block_diffs(log_rates, log_controls, block_of, arm, ref)
    return {**paired_interval(diffs, level, power, df_lost=2), "slope": slope,
            "method": PAIRED_METHOD + ", adjusted for the CPU-speed control"}


@dataclass(frozen=True)
class PairedStoppingRule:
    """How many blocks a paired run measures: ``min_blocks`` pilot blocks, then as many as the paired t
    interval needs for a relative half-width of ``target``, within the block and time budgets.

    Two-stage: the pilots' spread of block differences, at its upper ``assurance`` bound, fixes the
    number of blocks, at least ``min_planned`` (default twice the pilots: a plan resting mostly on pilots
    that happened to agree would cover less); where that number is reached and the interval is still
    wider than the target, the plan is made again from all blocks so far (it only grows). It never stops
    at a lucky early look.
    """

    target: float = 0.02
    min_blocks: int = 6
    max_blocks: int = 200
    max_time_s: float = 180.0
    assurance: float = ASSURANCE
    df_lost: int = 1
    min_planned: int | None = None

    def _plan(self, diffs: Sequence[float], start: int, cap: int = PLAN_CAP) -> int:
        bound = sd_bound(diffs, self.df_lost, self.assurance)
        if bound == 0:
            return start
        limit = math.asinh(self.target) / bound
        return _first_n(limit, lambda n: t_quantile(0.5 + LEVEL / 2, n - self.df_lost) / math.sqrt(n),
                        max(start, self.df_lost + 1), max(start, cap))

    def _wide(self, diff_series: list[list[float]], n: int) -> bool:
        for diffs in diff_series:
            hw = paired_interval(diffs[:n], df_lost=self.df_lost)["half_width"]
            if hw is None or hw > self.target:
                return True
        return False

    def blocks_needed(self, diff_series: list[list[float]], limit: int | None = None) -> int:
        """The number of blocks the blocks so far plan (the largest any comparison needs), at most
        ``limit`` (default ``max_blocks``)."""
        limit = self.max_blocks if limit is None else limit
        n0 = self.min_blocks
        floor = 2 * n0 if self.min_planned is None else max(n0, self.min_planned)
        need = max([floor] + [self._plan(d[:n0], n0, limit) for d in diff_series])
        have = min(len(d) for d in diff_series)
        while need < limit and have >= need and self._wide(diff_series, need):
            need = max([need + 1] + [self._plan(d[:need], need + 1, limit) for d in diff_series])
        return min(need, limit)

    def decide(self, diff_series: list[list[float]], elapsed_s: float) -> tuple[bool, str | None]:
        """(stop?, why) for the blocks so far; ``diff_series`` holds one list of block differences per
        comparison. Reasons: ``target`` (the planned blocks reached it), ``max_blocks``, ``time_cap``."""
        n = min((len(d) for d in diff_series), default=0)
        if n >= self.min_blocks:
            need = self.blocks_needed(diff_series, limit=self.max_blocks + 1)
            if n >= min(need, self.max_blocks):
                return True, "target" if need <= self.max_blocks else "max_blocks"
        if elapsed_s >= self.max_time_s and n >= 1:
            return True, "time_cap"
        return False, None
