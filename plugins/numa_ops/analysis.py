"""Statistics over stored runs: NUMA penalty with a bootstrap CI, scaling-law fits, scaling regimes.

scipy does the work: ``scipy.stats.bootstrap`` for the ratio of two throughputs, ``scipy.stats.ttest_ind``
for it over a few runs' means, ``scipy.stats.linregress`` in log space for power laws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

LINEAR_BAND = (0.8, 1.2)  # exponents of time-per-sample vs size counted as linear scaling


def penalty_ci(local: list[float], remote: list[float], level: float = 0.95, seed: int = 0) -> dict[str, float | None]:
    """Remote penalty ``1 - mean(remote) / mean(local)`` of per-trial samples/s, with a bootstrap CI."""
    if len(local) < 2 or len(remote) < 2:
        return {"penalty": None, "low": None, "high": None}
    point = 1 - np.mean(remote) / np.mean(local)

    def statistic(loc, rem, axis=-1):
        return 1 - np.mean(rem, axis=axis) / np.mean(loc, axis=axis)

    res = stats.bootstrap(
        (np.asarray(local, float), np.asarray(remote, float)), statistic, confidence_level=level,
        n_resamples=2000, method="percentile", random_state=np.random.default_rng(seed),
    )
    return {"penalty": float(point), "low": float(res.confidence_interval.low), "high": float(res.confidence_interval.high)}


def between_run_ci(local_runs: list[float], remote_runs: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """A CI of the penalty from run means alone (each run one draw): a two-sample t interval of their logs.

    The t distribution, not a bootstrap: with 2 to 4 runs a side a bootstrap has too few distinct resamples
    and too short tails. One run-to-run spread for both placements (the same host and model), estimated from
    both: Welch's version has about 2 degrees of freedom with 3 runs a side. None with fewer than 2 runs a side.
    """
    loc, rem = np.asarray(local_runs, float), np.asarray(remote_runs, float)
    if len(loc) < 2 or len(rem) < 2 or (loc <= 0).any() or (rem <= 0).any():
        return None
    ci = stats.ttest_ind(np.log(rem), np.log(loc), equal_var=True).confidence_interval(level)  # log(remote / local)
    return float(1 - np.exp(ci.high)), float(1 - np.exp(ci.low))


@dataclass(frozen=True)
class PowerLaw:
    """``y = prefactor * x ** exponent``, fitted in log space."""

    exponent: float
    prefactor: float
    r_squared: float
    max_abs_residual: float  # in log10 units: 0.1 is a 26% miss at the worst point
    points: int

    def regime(self) -> str:
        """For time per sample against model size: linear, super-linear or saturation (sub-linear)."""
        if self.exponent > LINEAR_BAND[1]:
            return "super-linear"
        if self.exponent >= LINEAR_BAND[0]:
            return "linear"
        return "saturation"


def fit_power_law(x: list[float], y: list[float]) -> PowerLaw | None:
    """Least-squares line through (log10 x, log10 y); None with fewer than 3 positive points."""
    pts = [(a, b) for a, b in zip(x, y, strict=True) if a and b and a > 0 and b > 0]
    if len(pts) < 3:
        return None
    lx, ly = np.log10([p[0] for p in pts]), np.log10([p[1] for p in pts])
    fit = stats.linregress(lx, ly)
    residuals = ly - (fit.intercept + fit.slope * lx)
    return PowerLaw(float(fit.slope), float(10**fit.intercept), float(fit.rvalue**2), float(np.abs(residuals).max()), len(pts))
