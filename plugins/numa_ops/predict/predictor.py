"""Stage laws fitted on one machine's measured configurations, and a configuration's predicted stages, throughput
and regime.

On a GPU the stages are those of the record's ideal pipelined rate (``worker.measure``): the H2D copy (from the
bytes of a batch, pinned and pageable host memory apart), the GPU's forward (from the FLOPs of a batch and the
layers, whose kernels set its floor; one law per execution mode), the D2H copy (from its bytes, host memory apart)
and the CPU's issue time per batch (from the layers, i.e. the kernels it launches, and the H2D bytes, which a
pageable copy stages on the CPU; per execution mode and host memory). On the CPU the forward is the only stage.
The throughput is the batch over the slowest stage, as the ideal rate is built, and the regime that stage's
(``regime.of_binding``). Its interval comes from the stages' predictive distributions, drawn together.
"""

from __future__ import annotations

import copy
import math
import socket
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from numa_ops import regime
from numa_ops.predict.law import LEVEL, Estimate, Law
from numa_ops.predict.query import Query

# stage -> (column of db.prediction_points, law inputs, settings a law is fitted apart by)
GPU_LAWS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "h2d": ("h2d_ms", ("h2d_bytes",), ("host_memory",)),
    "forward": ("forward_ms", ("flops", "layers"), ("execution",)),
    "d2h": ("d2h_ms", ("d2h_bytes",), ("host_memory",)),
    "cpu_issue": ("issue_ms", ("layers", "h2d_bytes"), ("execution", "host_memory")),
}
CPU_LAWS = {"forward": GPU_LAWS["forward"]}
DRAWS = 20000  # joint draws of the stages for the throughput's interval (a fixed seed: the same answer each time)
LEANS_ON = 3  # measured configurations named as those a prediction leans on most


class NoLaw(ValueError):
    """A stage no law can predict: too few measured configurations of its kind on this machine."""


@dataclass(frozen=True)
class StagePrediction:
    """One stage's predicted ms per batch with its 95% prediction interval, and the law behind it."""

    low: float
    ms: float
    high: float
    configurations: int
    exponents: dict[str, float]
    beyond: float


@dataclass(frozen=True)
class Prediction:
    """A configuration's predicted stages, samples/s (the batch over the slowest stage), regime, and what the
    prediction rests on."""

    query: Query
    host: str
    machine: str
    device: str
    stages: dict[str, StagePrediction]
    samples_per_s: tuple[float, float, float]  # low, value, high
    binding_stage: str
    regime: str
    binding_odds: dict[str, float]  # share of the joint draws in which each stage binds
    extrapolation: list[str] = field(default_factory=list)
    leans_on: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        low, value, high = self.samples_per_s
        return {"query": self.query.to_json(), "host": self.host, "machine": self.machine, "device": self.device,
                "level": LEVEL, "samples_per_s": {"low": low, "value": value, "high": high},
                "stages": {k: s.__dict__ for k, s in self.stages.items()}, "binding_stage": self.binding_stage,
                "regime": self.regime, "binding_odds": self.binding_odds, "extrapolation": self.extrapolation,
                "leans_on": self.leans_on}

    def lines(self) -> list[str]:
        low, value, high = self.samples_per_s
        out = [f"{self.query.label()} on {self.machine} ({self.host}):",
               f"  samples/s {value:.1f}  [{low:.1f}, {high:.1f}] (95% prediction interval)",
               f"  regime {self.regime} (bound by {self.binding_stage}; "
               + ", ".join(f"{k} {v:.0%}" for k, v in self.binding_odds.items() if v > 0) + ")"]
        for name, s in self.stages.items():
            out.append(f"  {name:9} {s.ms:9.4f} ms/batch [{s.low:.4f}, {s.high:.4f}] from {s.configurations} "
                       "configurations")
        out += [f"  extrapolation: {what}" for what in self.extrapolation]
        out += [f"  leans on {c['configuration']} (weight {c['weight']:+.2f}, e.g. {c['example_run']})"
                for c in self.leans_on]
        return out


def _features(queries: list[Query]) -> dict[str, np.ndarray]:
    rows = [q.features() for q in queries]
    return {k: np.array([r[k] for r in rows]) for k in ("flops", "h2d_bytes", "d2h_bytes", "layers")}


def choose_machine(frame: pd.DataFrame, host: str | None = None, machine: str | None = None) -> tuple[str, str]:
    """The host (this one when it has points, else the one with most) and its machine (GPU model or ``cpu``) with
    the most measured configurations, unless named."""
    if not len(frame):
        raise NoLaw("no measured configurations in the database: run a sweep first")
    hosts = frame["host"].value_counts()
    host = host or (socket.gethostname() if socket.gethostname() in hosts.index else str(hosts.index[0]))
    on_host = frame[frame["host"] == host]
    if not len(on_host):
        raise NoLaw(f"no measured configurations of host {host!r}; hosts: {', '.join(map(str, hosts.index))}")
    machines = on_host["machine"].value_counts()
    machine = machine or str(machines.index[0])
    if machine not in machines.index:
        raise NoLaw(f"host {host} has no configurations measured on {machine!r}; on: {', '.join(machines.index)}")
    return host, machine


class Predictor:
    """The laws of one machine of one host, fitted on its measured configurations (``db.prediction_points``)."""

    def __init__(self, frame: pd.DataFrame, host: str | None = None, machine: str | None = None, draws: int = DRAWS):
        self.host, self.machine = choose_machine(frame, host, machine)
        self.points = frame[(frame["host"] == self.host) & (frame["machine"] == self.machine)].reset_index(drop=True)
        self.device = str(self.points["device"].iloc[0])
        self.specs = GPU_LAWS if self.device == "cuda" else CPU_LAWS
        self.queries = [Query.of_row(r) for r in self.points.itertuples()]
        self.x = _features(self.queries)
        columns = {c for c, _, _ in self.specs.values()} | {k for _, _, by in self.specs.values() for k in by}
        self.columns = {c: self.points[c].to_numpy() for c in columns | {"example_run", "runs", "model_name"}}
        self.keep = np.ones(len(self.points), bool)
        self.draws = draws
        self._laws: dict[tuple[str, tuple[Any, ...]], tuple[Law | None, np.ndarray]] = {}

    def without(self, index: int) -> Predictor:
        """The same machine's laws fitted without configuration ``index`` (a held-out check)."""
        other = copy.copy(self)
        other.keep, other._laws = self.keep.copy(), {}
        other.keep[index] = False
        return other

    def law(self, stage: str, query: Query) -> tuple[Law, np.ndarray]:
        """The stage's law for the query's kind (execution mode, host memory), and which points it was fitted on."""
        column, inputs, by = self.specs[stage]
        kind = tuple(getattr(query, k) for k in by)
        if (stage, kind) not in self._laws:
            values = self.columns[column].astype(float)
            mask = self.keep & np.isfinite(values) & (np.nan_to_num(values) > 0)
            for k, v in zip(by, kind, strict=True):
                mask &= self.columns[k] == v
            law = Law.fit(inputs, {k: self.x[k][mask] for k in inputs}, np.log(values[mask]))
            self._laws[(stage, kind)] = (law, mask)
        law, mask = self._laws[(stage, kind)]
        if law is None:
            what = ", ".join(f"{k}={v}" for k, v in zip(by, kind, strict=True))
            raise NoLaw(f"{stage}: {int(mask.sum())} measured configuration(s) with {what} on {self.machine} "
                        f"({self.host}); a law needs more, varied in its inputs ({', '.join(inputs)})")
        return law, mask

    def predict(self, query: Query, extrapolate: bool = False) -> Prediction:
        """The query's stages, samples/s and regime with 95% prediction intervals (``OutsideRange`` far outside
        what was measured, unless ``extrapolate``; ``NoLaw`` without enough points)."""
        point = query.features()
        estimates, stages, masks = {}, {}, {}
        for stage in self.specs:
            law, mask = self.law(stage, query)
            est = law.predict(point, extrapolate)
            estimates[stage], masks[stage] = est, mask
            low, ms, high = est.interval()
            stages[stage] = StagePrediction(low, ms, high, int(mask.sum()),
                                            {k: law.slope(k) for k in law.used}, est.beyond)
        binding = max(stages, key=lambda k: stages[k].ms)
        rate, odds = _throughput(estimates, query.batch, self.draws)
        rate = (rate[0], query.batch * 1e3 / stages[binding].ms, rate[1])
        return Prediction(
            query,
            self.host,
            self.machine,
            self.device,
            stages,
            rate,
            binding,
            regime.of_binding(binding),
            odds,
            [f"{k}: {e.beyond_what}" for k, e in estimates.items() if e.beyond > 0],
            self._leans_on(estimates[binding], masks[binding]),
        )

    def _leans_on(self, est: Estimate, mask: np.ndarray) -> list[dict[str, Any]]:
        rows = np.flatnonzero(mask)
        order = np.argsort(-np.abs(est.weights))[:LEANS_ON]
        return [{"configuration": self.queries[rows[i]].label(), "model": str(self.columns["model_name"][rows[i]]),
                 "example_run": str(self.columns["example_run"][rows[i]]), "runs": int(self.columns["runs"][rows[i]]),
                 "weight": float(est.weights[i])} for i in order]


def _throughput(estimates: dict[str, Estimate], batch: int, draws: int) -> tuple[tuple[float, float], dict[str, float]]:
    """The samples/s interval from joint draws of every stage's predictive t distribution, and how often each
    stage binds."""
    rng = np.random.default_rng(0)
    names = list(estimates)
    joint = np.column_stack([e.center + e.se * rng.standard_t(e.df, draws) for e in estimates.values()])
    slowest = joint.max(axis=1)
    rates = batch * 1e3 / np.exp(slowest)
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(rates, [tail, 1 - tail])
    binds = np.bincount(joint.argmax(axis=1), minlength=len(names)) / draws
    return (float(low), float(high)), {n: float(b) for n, b in zip(names, binds, strict=True)}


def predict(frame: pd.DataFrame, query: Query, host: str | None = None, machine: str | None = None,
            extrapolate: bool = False) -> Prediction:
    """Fit on ``frame`` (``db.prediction_points``) and predict ``query``."""
    return Predictor(frame, host, machine).predict(query, extrapolate)


def measured_regime(row: Any) -> str | None:
    """A point's measured regime (None on the CPU, whose records name none)."""
    value = getattr(row, "regime", None)
    return value if isinstance(value, str) and value else None


def relative_error(predicted: float, measured: float) -> float:
    return abs(predicted / measured - 1) if measured and math.isfinite(measured) else math.nan
