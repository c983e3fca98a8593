"""Statistics over stored runs: the NUMA penalty between worker processes with its MDE, a CPU-speed (CUPED)
adjustment, scaling-law fits, scaling regimes.

The unit of a penalty is the worker process: one run record is one process measuring one configuration,
and its headline (``samples_per_s``) is one draw. Trials of one process share its worker, memory and moment,
so they are not independent draws, and separate processes of the same configuration differ by more than a
record's own interval claims. Everything here is deterministic: no random numbers, inputs sorted.

Conventions (the same in the database's views, see ``numa_ops.db.views``):

- penalty ``= 1 - exp(mean ln remote - mean ln local)``: the slowdown of the geometric mean of the remote
  processes' samples/s against the local ones' (0.04: remote runs 4% fewer samples/s; negative: faster).
- its 95% interval: a two-sample t interval of the log ratio, pooled variance, ``df = n_local + n_remote - 2``,
  mapped through ``1 - exp(.)`` (exact coverage for lognormal process noise of equal spread at both placements).
- the minimum detectable effect (MDE) at 95% confidence and 80% power, from the same pooled noise:
  ``mde_log = (t(0.975, df) + t(0.80, df)) * s_p * sqrt(1/n_local + 1/n_remote)``, reported as the slowdown
  ``mde = 1 - exp(-mde_log)`` (a remote placement this much slower is found 80% of the time).
- a penalty is **measured** when its 95% interval excludes 0 (``|ln(remote / local)| >= t(0.975, df) * se``), and
  stated with its MDE beside it; when the interval holds 0 the product says "not detectable at this noise (MDE x%)"
  and quotes no penalty. A true penalty of the MDE is measured 80% of the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from numa_ops.labels import host_memory

LINEAR_BAND = (0.8, 1.2)  # exponents of time-per-sample vs size counted as linear scaling
LEVEL = 0.95  # two-sided confidence of every penalty interval
POWER = 0.80  # power at which the minimum detectable effect is stated
T_TABLE_MAX_DF = 400  # the store's views embed t quantiles for df 1..T_TABLE_MAX_DF; normal quantiles beyond


@lru_cache(maxsize=4096)
def t_quantile(q: float, df: int) -> float:
    """``scipy.stats.t.ppf(q, df)``; the normal quantile beyond ``T_TABLE_MAX_DF`` (as the store's views do)."""
    if df > T_TABLE_MAX_DF:
        return float(stats.norm.ppf(q))
    return float(stats.t.ppf(q, df))


def mde_factor(df: int, level: float = LEVEL, power: float = POWER) -> float:
    """``t(1 - (1 - level) / 2, df) + t(power, df)``: the MDE in standard errors."""
    return t_quantile(1 - (1 - level) / 2, df) + t_quantile(power, df)


def not_detectable(mde: float) -> str:
    """The words for a penalty whose interval holds 0 (the view's ``status`` uses the same)."""
    return f"not detectable at this noise (MDE {mde:.1%})"


@dataclass(frozen=True)
class Penalty:
    """A remote-vs-local penalty between worker processes, with its 95% t interval and its MDE.

    ``penalty``, ``low``, ``high`` and ``mde`` are relative slowdowns (see the module's conventions);
    ``sd_log`` is the pooled between-process standard deviation of ln samples/s (about the CV).
    """

    penalty: float
    low: float
    high: float
    mde: float
    n_local: int
    n_remote: int
    df: int
    sd_log: float

    @property
    def log_ratio(self) -> float:
        """``mean ln remote - mean ln local``."""
        return math.log1p(-self.penalty)

    @property
    def detectable(self) -> bool:
        """The 95% interval excludes 0 (a slowdown or a speed-up is shown)."""
        return self.low >= 0 or self.high <= 0  # as the view: |ln ratio| >= t975 * se

    @property
    def verdict(self) -> str:
        if self.detectable:
            return "measured"
        return not_detectable(self.mde)


@dataclass(frozen=True)
class AdjustedPenalty:
    """A penalty after the CUPED adjustment on a per-process covariate (the CPU-speed control).

    ``theta`` is the slope of ln samples/s on ln control within placements (pooled); ``r_squared`` the share
    of the between-process variance (within placements) the control explains; ``df_lost`` the degree of
    freedom the slope costs; ``control_shift`` is ``mean ln control remote - mean ln control local``: where the
    control itself differs between placements, the adjustment moves the penalty by ``theta * control_shift``.
    """

    adjusted: Penalty
    unadjusted: Penalty
    theta: float
    r_squared: float
    control_shift: float
    df_lost: int = 1


def _logs(values: list[float]) -> np.ndarray | None:
    arr = np.sort(np.asarray(values, float))
    if (~np.isfinite(arr)).any() or (arr <= 0).any():
        return None
    return np.log(arr)


def _from_log(d: float, se: float, df: int, n_local: int, n_remote: int, sd: float) -> Penalty:
    half = t_quantile(1 - (1 - LEVEL) / 2, df) * se
    return Penalty(
        penalty=float(-math.expm1(d)),
        low=float(-math.expm1(d + half)),
        high=float(-math.expm1(d - half)),
        mde=float(-math.expm1(-mde_factor(df) * se)),
        n_local=n_local,
        n_remote=n_remote,
        df=df,
        sd_log=float(sd),
    )


def process_penalty(local_runs: list[float], remote_runs: list[float]) -> Penalty | None:
    """The penalty between worker processes: one headline samples/s per process and placement.

    A two-sample t interval of the logs with one pooled between-process spread for both placements (the same
    host and model; Welch's version has about 2 degrees of freedom with 3 runs a side). None with fewer than
    2 processes a side or a headline that is not a positive number.
    """
    loc, rem = _logs(local_runs), _logs(remote_runs)
    if loc is None or rem is None or len(loc) < 2 or len(rem) < 2:
        return None
    n1, n2 = len(loc), len(rem)
    df = n1 + n2 - 2
    var = ((n1 - 1) * np.var(loc, ddof=1) + (n2 - 1) * np.var(rem, ddof=1)) / df
    sd = math.sqrt(var)
    return _from_log(float(np.mean(rem) - np.mean(loc)), sd * math.sqrt(1 / n1 + 1 / n2), df, n1, n2, sd)


def between_run_ci(
    local_runs: list[float], remote_runs: list[float], level: float = LEVEL
) -> tuple[float, float] | None:
    """The 95% interval of ``process_penalty`` alone, as ``(low, high)``; None with fewer than 2 runs a side."""
    out = process_penalty(local_runs, remote_runs)
    if out is None:
        return None
    if level == LEVEL:
        return out.low, out.high
    half = t_quantile(1 - (1 - level) / 2, out.df) * out.sd_log * math.sqrt(1 / out.n_local + 1 / out.n_remote)
    return float(-math.expm1(out.log_ratio + half)), float(-math.expm1(out.log_ratio - half))


def noise_floor(runs: list[float]) -> tuple[float, float | None]:
    """Between-process spread of one configuration at one placement: ``(sd of ln samples/s, A/A MDE)``.

    The A/A MDE is that of a comparison of two placements with as many processes each and this spread (what a
    one-node host can still say: the smallest penalty its repeats could show). None below 2 processes.
    """
    logs = _logs(runs)
    if logs is None or len(logs) < 2:
        return (math.nan, None)
    n = len(logs)
    sd = float(np.std(logs, ddof=1))
    return sd, float(-math.expm1(-mde_factor(2 * n - 2) * sd * math.sqrt(2 / n)))


def cuped_penalty(local_runs: list[float], remote_runs: list[float], local_control: list[float],
                  remote_control: list[float]) -> AdjustedPenalty | None:
    """The process penalty adjusted on a per-process covariate (CUPED, Deng et al. 2013; here ANCOVA).

    ``ln y' = ln y - theta * (ln x - mean ln x)`` with ``theta = cov(ln y, ln x) / var(ln x)`` pooled within
    the two placements (so the placement's own effect does not leak into the slope), ``mean ln x`` over both.
    The interval is the ANCOVA t interval: residual spread with ``df = n_local + n_remote - 3`` (one lost to
    theta) and the standard error ``s_e * sqrt(1/n1 + 1/n2 + control_shift^2 / Sxx)``; the MDE from the same.
    Pairs ``(y, x)`` are sorted together. None with fewer than 4 processes in all, fewer than 2 a side, a
    non-positive value, or a control that does not vary within placements.
    """
    if len(local_runs) != len(local_control) or len(remote_runs) != len(remote_control):
        raise ValueError("one control value per process: the runs and their controls differ in number")
    plain = process_penalty(local_runs, remote_runs)
    arms = []
    for ys, xs in ((local_runs, local_control), (remote_runs, remote_control)):
        pairs = np.asarray(sorted(zip(ys, xs, strict=True)), float).reshape(-1, 2)
        if (~np.isfinite(pairs)).any() or (pairs <= 0).any():
            return None
        arms.append((np.log(pairs[:, 0]), np.log(pairs[:, 1])))
    (ly1, lx1), (ly2, lx2) = arms
    n1, n2 = len(ly1), len(ly2)
    df = n1 + n2 - 3
    if plain is None or df < 1:
        return None
    sxx = float(((lx1 - lx1.mean()) ** 2).sum() + ((lx2 - lx2.mean()) ** 2).sum())
    sxy = float(((lx1 - lx1.mean()) * (ly1 - ly1.mean())).sum() + ((lx2 - lx2.mean()) * (ly2 - ly2.mean())).sum())
    syy = float(((ly1 - ly1.mean()) ** 2).sum() + ((ly2 - ly2.mean()) ** 2).sum())
    if sxx <= 0:
        return None
    theta = sxy / sxx
    shift = float(lx2.mean() - lx1.mean())
    d = float(ly2.mean() - ly1.mean()) - theta * shift
    s_e = math.sqrt(max(syy - theta * sxy, 0.0) / df)
    se = s_e * math.sqrt(1 / n1 + 1 / n2 + shift**2 / sxx)
    r2 = theta * sxy / syy if syy > 0 else 0.0
    return AdjustedPenalty(adjusted=_from_log(d, se, df, n1, n2, s_e), unadjusted=plain, theta=float(theta),
                           r_squared=float(r2), control_shift=shift)


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
    return PowerLaw(
        float(fit.slope), float(10**fit.intercept), float(fit.rvalue**2), float(np.abs(residuals).max()), len(pts)
    )


# Placement modes whose arms cannot move the CPU-speed control (the launching CPU is the same at both placements):
# only there is a penalty adjusted on it.
ADJUSTABLE_MODES = frozenset({"pool"})

# What a penalty's interval covers (the penalty table's ``ci_basis``).
BETWEEN_RUNS = "between worker processes: t interval of ln samples/s over one headline per process"


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _config_key(row: Any, key: list[str]) -> tuple:
    """A row's configuration as a dictionary key: a missing value is None, never NaN."""
    return tuple(None if pd.isna(v := getattr(row, c)) else v for c in key)


def penalty_table(pen: pd.DataFrame, runs: pd.DataFrame, key: list[str], one_process: str) -> pd.DataFrame:
    """One row per configuration of the ``numa_penalty`` view with both placements measured.

    ``penalty`` is given only where its interval excludes 0 (``verdict``, the view's status, is "measured"). In
    ``pool`` placement, where every process of a configuration (``runs``, keyed by ``key``) recorded the CPU-speed
    control, the CUPED-adjusted penalty, its interval and MDE and the control's R^2 are given beside it
    (``cuped_penalty``): only the host pool moves there, so the placement cannot move the control. In ``process``
    placement numactl moves the CPU too: the control would absorb part of a real CPU-side penalty, so none is given.
    """
    pen = pen[pen["local_processes"].gt(0) & pen["remote_processes"].gt(0)] if len(pen) else pen
    controls: dict[tuple, dict[str, list[tuple[float, float]]]] = {}
    for r in runs.itertuples(index=False) if len(runs) else ():
        controls.setdefault(_config_key(r, key), {}).setdefault(r.placement, []).append(
            (r.samples_per_s, r.cpu_control_rate)
        )
    out = []
    for r in pen.itertuples(index=False):
        status = r.status
        row = {
            "host": r.host,
            "model": r.model_name,
            "gpu": r.gpu_id,
            "image": r.height,
            "batch": r.batch_size,
            "execution": r.execution,
            "host memory": host_memory(r.pinned_memory),
            "placement mode": r.placement_mode,
            "regime": r.regime,
            "local processes": int(r.local_processes),
            "remote processes": int(r.remote_processes),
            "penalty": _num(r.throughput_penalty) if status == "measured" else None,
            "95% CI low": _num(r.penalty_low),
            "95% CI high": _num(r.penalty_high),
            "MDE": _num(r.mde),
            "verdict": status,
            "ci_basis": BETWEEN_RUNS if _num(r.penalty_low) is not None else one_process,
            "CPU-adjusted penalty": None,
            "adjusted CI low": None,
            "adjusted CI high": None,
            "adjusted MDE": None,
            "control R^2": None,
        }
        sides = [controls.get(_config_key(r, key), {}).get(p, []) for p in ("local", "remote")]
        if (
            r.placement_mode in ADJUSTABLE_MODES
            and all(sides)
            and all(not pd.isna(x) for side in sides for _, x in side)
        ):
            adj = cuped_penalty([y for y, _ in sides[0]], [y for y, _ in sides[1]],
                                [x for _, x in sides[0]], [x for _, x in sides[1]])
            if adj is not None:
                a = adj.adjusted
                row.update({"CPU-adjusted penalty": a.penalty if a.detectable else None, "adjusted CI low": a.low,
                            "adjusted CI high": a.high, "adjusted MDE": a.mde, "control R^2": adj.r_squared})
        out.append(row)
    return pd.DataFrame(out)


def scaling_laws(points: pd.DataFrame) -> pd.DataFrame:
    """Time per sample against parameters, a power law per experiment, study (a depth sweep and a dim sweep are
    fitted apart), execution, device, shape and host memory (pinned and pageable are never pooled)."""
    rows = []
    keys = ["experiment", "study", "execution", "device", "height", "batch_size"]
    if "pinned_memory" in points:
        points = points.assign(host_memory=points["pinned_memory"].map(host_memory))
        keys.append("host_memory")
    for key, group in points.groupby(keys) if len(points) else ():
        fit = fit_power_law(list(group["parameters"]), list(1.0 / group["samples_per_s"]))
        if fit is None:
            continue
        rows.append(
            {
                "experiment": key[0],
                "study": key[1],
                "execution": key[2],
                "device": key[3],
                "image": key[4],
                "batch": key[5],
                **({"host_memory": key[6]} if len(key) > 6 else {}),
                "models": fit.points,
                "exponent": round(fit.exponent, 4),
                "law": f"s/sample = {fit.prefactor:.3g} * params^{fit.exponent:.3f}",
                "R2": round(fit.r_squared, 4),
                "max |log10 residual|": round(fit.max_abs_residual, 3),
                "regime": fit.regime(),
            }
        )
    return pd.DataFrame(rows)


def rate_interval(process_rates: list[float] | None, run_low: float | None, run_high: float | None
                  ) -> tuple[float | None, float | None, float | None, str]:
    """A lane's samples/s with its 95% interval and what the interval covers: ``(center, low, high, basis)``.

    Several worker processes: their geometric mean and the t interval of ln samples/s between them (the process
    is the unit). One process: its own interval over its trials (it says nothing of the noise between processes).
    """
    given = process_rates if isinstance(process_rates, (list, tuple, np.ndarray)) else []
    rates = [float(r) for r in given if r is not None and r > 0]
    if len(rates) >= 2:
        logs = np.log(np.sort(rates))
        half = t_quantile(1 - (1 - LEVEL) / 2, len(logs) - 1) * float(np.std(logs, ddof=1)) / math.sqrt(len(logs))
        mean = float(np.mean(logs))
        return math.exp(mean), math.exp(mean - half), math.exp(mean + half), f"between {len(rates)} processes"
    if len(rates) == 1:
        if run_low is None or run_high is None or pd.isna(run_low) or pd.isna(run_high):
            return rates[0], None, None, "one process, no interval"
        return rates[0], float(run_low), float(run_high), "one process: its trials only"
    return None, None, None, "no successful run"


def lane_intervals(lanes: pd.DataFrame) -> pd.DataFrame:
    """``lanes`` with ``rate``, ``rate_low``, ``rate_high`` and ``ci_basis`` per row (``rate_interval``)."""
    cols = ["rate", "rate_low", "rate_high", "ci_basis"]
    if not len(lanes):
        return lanes.assign(**{c: pd.Series(dtype=object) for c in cols})
    got = [
        rate_interval(p, lo, hi)
        for p, lo, hi in zip(lanes["process_rates"], lanes["run_ci_low"], lanes["run_ci_high"], strict=True)
    ]
    return lanes.assign(**{c: [g[i] for g in got] for i, c in enumerate(cols)})


def has_both(series: pd.Series) -> bool:
    """Whether a scope holds several values of a setting (then every answer names which one it is about)."""
    return series.dropna().nunique() > 1
