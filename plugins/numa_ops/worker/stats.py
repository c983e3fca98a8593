"""Statistics over trials: median, 95% confidence interval, percentiles, adaptive stopping.

The interval is Student's t interval of the mean of per-trial throughputs (``scipy.stats``);
trials are the independent unit, batches within a trial are not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


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


def confidence_interval(values: list[float], level: float = 0.95) -> dict[str, float | int | None]:
    """Mean, median and the t interval of the mean; ``rel_half_width`` = half-width / mean."""
    n = len(values)
    arr = np.asarray(values, dtype=float)
    out: dict[str, float | int | None] = {
        "n": n,
        "mean": float(arr.mean()) if n else None,
        "median": float(np.median(arr)) if n else None,
        "low": None,
        "high": None,
        "rel_half_width": None,
        "level": level,
    }
    if n >= 2:
        sem = float(stats.sem(arr))
        if sem == 0.0:
            low = high = float(arr.mean())
        else:
            low, high = stats.t.interval(level, n - 1, loc=arr.mean(), scale=sem)
        out.update(low=float(low), high=float(high))
        mean = float(arr.mean())
        out["rel_half_width"] = (float(high) - float(low)) / 2 / mean if mean else math.inf
    return out


@dataclass(frozen=True)
class StoppingRule:
    """Add trials until every tracked CI is within ``target`` (relative half-width) or a budget runs out."""

    target: float = 0.02
    min_trials: int = 3
    max_trials: int = 20
    max_time_s: float = 120.0

    def decide(self, series: list[list[float]], elapsed_s: float) -> tuple[bool, str | None]:
        """(stop?, why) for the trials so far; ``series`` holds one list of per-trial values per mode."""
        n = min(len(s) for s in series)
        if n < self.min_trials:
            return False, None
        widths = [confidence_interval(s)["rel_half_width"] for s in series]
        if all(w is not None and w <= self.target for w in widths):
            return True, "target_met"
        if n >= self.max_trials:
            return True, "max_trials"
        if elapsed_s >= self.max_time_s:
            return True, "time_budget"
        return False, None
