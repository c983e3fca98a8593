"""The laws checked against held-out configurations: each measured configuration is predicted from the others
(leave one configuration out), and per regime the share of measured samples/s inside their 95% prediction
intervals (the coverage, near 95% when the intervals hold) and the median absolute error are reported."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from numa_ops.predict.law import OutsideRange
from numa_ops.predict.predictor import NoLaw, Predictor, measured_regime, relative_error


@dataclass(frozen=True)
class HeldOut:
    """One configuration predicted from the others: its measured and predicted samples/s, the interval, and
    whether the prediction extrapolated or was refused (``refused`` says why)."""

    host: str
    machine: str
    configuration: str
    regime: str | None
    measured: float
    predicted: float | None = None
    low: float | None = None
    high: float | None = None
    extrapolated: bool = False
    refused: str | None = None

    @property
    def inside(self) -> bool | None:
        return None if self.low is None else bool(self.low <= self.measured <= self.high)

    @property
    def error(self) -> float:
        return relative_error(self.predicted, self.measured) if self.predicted is not None else math.nan


HELD_OUT_DRAWS = 4000  # joint draws per held-out prediction (enough for a 95% interval's ends)


def leave_one_out(frame: pd.DataFrame, host: str | None = None, machine: str | None = None) -> list[HeldOut]:
    """Every configuration of one machine predicted from its others."""
    full = Predictor(frame, host, machine, draws=HELD_OUT_DRAWS)
    out = []
    for i, (query, row) in enumerate(zip(full.queries, full.points.itertuples(), strict=True)):
        common = {"host": full.host, "machine": full.machine, "configuration": query.label(),
                  "measured": float(row.samples_per_s)}
        try:
            got = full.without(i).predict(query)
        except (NoLaw, OutsideRange) as exc:
            out.append(HeldOut(**common, regime=measured_regime(row), refused=str(exc)))
            continue
        low, value, high = got.samples_per_s
        out.append(HeldOut(**common, regime=measured_regime(row) or got.regime, predicted=value, low=low, high=high,
                           extrapolated=bool(got.extrapolation)))
    return out


def every_machine(frame: pd.DataFrame) -> list[HeldOut]:
    """The check on every host and machine of ``frame`` that has enough configurations."""
    out: list[HeldOut] = []
    if not len(frame):
        return out
    for (host, machine), _ in frame.groupby(["host", "machine"]):
        out += leave_one_out(frame, str(host), str(machine))
    return out


def summary(held: list[HeldOut]) -> pd.DataFrame:
    """Per machine and regime: configurations, how many were predicted, the coverage of the 95% prediction
    intervals, the median absolute error, how many were extrapolated or refused."""
    if not held:
        return pd.DataFrame()
    frame = pd.DataFrame([{**asdict(h), "inside": h.inside, "error": h.error} for h in held])
    frame["regime"] = frame["regime"].fillna("(none recorded)")
    rows = []
    for (machine, reg), part in frame.groupby(["machine", "regime"]):
        made = part[part["refused"].isna()]
        rows.append({"machine": machine, "regime": reg, "configurations": len(part), "predicted": len(made),
                     "coverage of 95% intervals": float(made["inside"].mean()) if len(made) else None,
                     "median abs error": float(np.median(made["error"])) if len(made) else None,
                     "extrapolated": int(made["extrapolated"].sum()), "refused": len(part) - len(made)})
    return pd.DataFrame(rows)
