"""One law: ln(stage time) linear in ln(inputs), least squares over measured configurations, with the 95%
prediction interval of a new configuration's value.

For a new point ``x0`` the prediction is ``x0 b`` and its interval ``x0 b ± t(0.975, n - p) s sqrt(1 + x0 (X'X)^-1
x0')``: the spread of the configurations about the law (``s``) plus the uncertainty of the law itself at ``x0``
(its leverage). An input that did not vary in the fit is left out of it (the law cannot say how the time depends
on it). ``weights`` say how much each measured configuration counts in a prediction: ``x0 (X'X)^-1 X'``.

Outside the measured range of an input the law extrapolates: up to ``WIDEN_LIMIT`` (a factor of 2 beyond the
range) the prediction is made and its interval widened (its scale times ``1 + d``, ``d`` the distance beyond the
range in factors of 2); beyond it the law refuses (``OutsideRange``) unless asked to extrapolate anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

LEVEL = 0.95
WIDEN_LIMIT = 1.0  # in factors of 2 beyond the measured range: widened up to it, refused beyond
QUADRATIC_MIN_POINTS = 8  # a curved first input (a copy's latency floor) once this many distinct values were measured


class OutsideRange(ValueError):
    """A prediction the laws will not make: too far outside what was measured."""


@dataclass(frozen=True)
class Estimate:
    """A predicted ln value with its predictive scale (``se``, t with ``df``), how far it extrapolated (factors of
    2 beyond the measured range, 0 inside), and each training point's weight in it."""

    center: float
    se: float
    df: int
    beyond: float
    weights: np.ndarray
    beyond_what: str | None = None

    def interval(self, level: float = LEVEL) -> tuple[float, float, float]:
        """(low, value, high) in the stage's unit."""
        t = float(stats.t.ppf(0.5 + level / 2, self.df))
        return math.exp(self.center - t * self.se), math.exp(self.center), math.exp(self.center + t * self.se)


@dataclass
class Law:
    """``ln y = b0 + sum b_k ln x_k (+ b q (ln x_1 - mean)^2)`` over the training points."""

    inputs: tuple[str, ...]
    x: dict[str, np.ndarray]  # ln inputs of the training points
    y: np.ndarray  # ln values
    used: tuple[str, ...] = ()
    quadratic: bool = False
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    xtx_inv: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    s: float = math.nan
    df: int = 0

    @classmethod
    def fit(cls, inputs: tuple[str, ...], x: dict[str, np.ndarray], y: np.ndarray) -> Law | None:
        """The law over the points; None when there are too few for a spread (fewer than parameters + 1)."""
        used = tuple(k for k in inputs if len(np.unique(np.round(x[k], 9))) >= 2)
        law = cls(inputs, x, np.asarray(y, float), used)
        law.quadratic = bool(used) and len(np.unique(np.round(x[used[0]], 9))) >= QUADRATIC_MIN_POINTS
        design = law.design(x)
        while design.shape[1] >= len(law.y) and law.used:  # drop inputs (last first) until the spread has a df
            law.used, law.quadratic = law.used[:-1], False
            design = law.design(x)
        if len(law.y) - design.shape[1] < 1:
            return None
        law.xtx_inv = np.linalg.pinv(design.T @ design)
        law.coef = law.xtx_inv @ design.T @ law.y
        law.df = len(law.y) - design.shape[1]
        law.s = float(np.sqrt(np.sum((law.y - design @ law.coef) ** 2) / law.df))
        return law

    def design(self, x: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(x.values())))
        cols = [np.ones(n)] + [np.asarray(x[k], float) for k in self.used]
        if self.quadratic:
            center = float(np.mean(self.x[self.used[0]]))
            cols.append((np.asarray(x[self.used[0]], float) - center) ** 2)
        return np.column_stack(cols)

    def slope(self, name: str) -> float | None:
        """The exponent of input ``name`` (at the middle of its range, with a curved first input)."""
        return float(self.coef[1 + self.used.index(name)]) if name in self.used else None

    def beyond(self, point: dict[str, float]) -> tuple[float, str | None]:
        """How far ``point`` lies outside the measured inputs, in factors of 2, and which input does."""
        worst, what = 0.0, None
        for k in self.inputs:
            lo, hi = float(np.min(self.x[k])), float(np.max(self.x[k]))
            d = max(lo - point[k], point[k] - hi, 0.0) / math.log(2)
            if d > worst + 1e-9:
                worst, what = (
                    d,
                    f"{k} {math.exp(point[k]):.3g} outside the measured {math.exp(lo):.3g}..{math.exp(hi):.3g}",
                )
        return worst, what

    def predict(self, point: dict[str, float], extrapolate: bool = False) -> Estimate:
        """The law's estimate at ``point`` (ln inputs); refused beyond ``WIDEN_LIMIT`` unless ``extrapolate``."""
        d, what = self.beyond(point)
        if d > WIDEN_LIMIT and not extrapolate:
            raise OutsideRange(f"{what}: more than a factor of {2 ** WIDEN_LIMIT:g} beyond what was measured")
        x0 = self.design({k: np.array([point[k]]) for k in self.inputs})[0]
        leverage = float(x0 @ self.xtx_inv @ x0)
        se = self.s * math.sqrt(1 + leverage) * (1 + d)
        weights = x0 @ self.xtx_inv @ self.design(self.x).T
        return Estimate(float(x0 @ self.coef), se, self.df, d, weights, what)
