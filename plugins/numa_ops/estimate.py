"""What a plan will cost before it runs: runs, lanes, worker starts, GPU time and wall time.

A run's seconds come from past records of the same configuration in DuckDB where there are some
(matched on what sets a run's duration: model dims, image size, batch, num_samples, execution and
compile, device type and GPU name), else from a cost model: the ViT's FLOPs and bytes moved give a
batch's time, the trial settings (whole passes of ``num_samples``, at least ``min_trial_s`` a trial,
between ``min_trials`` and ``max_trials`` trials, within ``max_trial_time_s``) give the number of
passes, plus the warm-up, the run's fixed set-up and compilation. Each lane adds one worker start.

Wall time simulates the plan as it runs: a device's lanes one after another, devices in parallel up
to ``max_lanes`` at once, and a shared-out (``hardware.spread``) run taken by whichever lane reaches it
first, in the lanes' order (longest first, see :func:`numa_ops.plan.build_plan`'s ``run_seconds``).
The model's constants were calibrated on H100 records (``bench/results/runs``) and a 2-core CPU host.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from numa_ops.plan import lanes_by_device
from numa_ops.roles import SkippedStudyJson
from numa_ops.specs import Lane, RunSpec, distinct_runs
from numa_ops.worker.flops import bytes_per_sample, flops_per_sample


@dataclass(frozen=True)
class DeviceCosts:
    """The cost model's constants for one kind of device."""

    flops_per_s: float  # sustained forward FLOP/s (fp32) of one run
    launch_s_per_layer: float  # eager: the CPU's issue time per transformer layer and batch
    launch_s_base: float  # eager: the rest of a batch's issue time (embedding, head, copies)
    copy_bytes_per_s: float  # host <-> device
    run_setup_s: float  # building the model, filling the pool, sizing the passes, the copy micro-pass
    worker_start_s: float  # a fresh worker process before its first run (imports, CUDA context)
    compile_s: float  # torch.compile of one model (execution compile*, or compile_model)
    kinds_per_trial: float  # passes timed per trial: serial; on a GPU also pipelined, and a short stage pass
    trials_between: float  # where between min_trials and max_trials a run's trials end up (0: min, 1: max)


# Calibrated on H100 80GB records (bench/results/runs: eager ViTs at 224-768 px, cuda_graph sweeps) and on a
# 2-core CPU host (quick_test: 12.8 s and 30.8 s runs, 2.2 s worker start-up).
CUDA = DeviceCosts(flops_per_s=25e12, launch_s_per_layer=0.30e-3, launch_s_base=0.6e-3, copy_bytes_per_s=20e9,
                   run_setup_s=2.0, worker_start_s=8.0, compile_s=35.0, kinds_per_trial=2.2, trials_between=0.5)
CPU = DeviceCosts(flops_per_s=7.5e10, launch_s_per_layer=0.0, launch_s_base=0.0, copy_bytes_per_s=10e9,
                  run_setup_s=2.0, worker_start_s=2.5, compile_s=40.0, kinds_per_trial=1.0, trials_between=0.5)
GRAPH_LAUNCH_S = 0.05e-3  # a CUDA graph's replay per batch


def device_costs(spec: RunSpec) -> DeviceCosts:
    return CPU if spec.gpu_id is None else CUDA


def batch_seconds(spec: RunSpec) -> float:
    """One batch's time by the model: the slower of issuing and computing the forward, plus its copies."""
    costs, test = device_costs(spec), spec.test
    compute = flops_per_sample(spec.model, test.tensor_shape) * test.batch_size / costs.flops_per_s
    if spec.gpu_id is None:
        return compute
    if test.execution in ("cuda_graph", "compile_reduce_overhead"):
        launch = GRAPH_LAUNCH_S
    else:
        launch = costs.launch_s_base + costs.launch_s_per_layer * spec.model.depth
    moved = bytes_per_sample(spec.model, test.tensor_shape, test.d2h_mode)
    copies = (moved["h2d"] + moved["d2h"]) * test.batch_size / costs.copy_bytes_per_s
    return max(launch, compute) + copies


def paired_run_seconds(spec: RunSpec) -> float:
    """A paired run's duration at most: set-up, each arm's warm-up, and its paired trials' time cap (it stops
    earlier once its target is reached; a budget is checked against what it may take)."""
    costs, test = device_costs(spec), spec.test
    warmup = len(spec.arms) * test.warmup_batches * batch_seconds(spec)
    compiled = test.compile_model or test.execution.startswith("compile")
    return costs.run_setup_s + warmup + test.paired_max_s + (costs.compile_s if compiled else 0.0)


def model_run_seconds(spec: RunSpec) -> float:
    """A run's duration by the cost model (no records): set-up, warm-up, sizing, the trials, compilation."""
    if spec.placement_mode == "paired":
        return paired_run_seconds(spec)
    costs, test = device_costs(spec), spec.test
    batches = math.ceil(test.num_samples / test.batch_size)
    pass_s = batches * batch_seconds(spec)
    passes = max(1, math.ceil(test.min_trial_s / pass_s)) if pass_s > 0 else 1
    trial_s = costs.kinds_per_trial * passes * pass_s
    trials = test.min_trials + costs.trials_between * (test.max_trials - test.min_trials)
    trials = max(1.0, min(trials, math.ceil(test.max_trial_time_s / trial_s) if trial_s else trials))
    sizing = costs.kinds_per_trial * pass_s  # one pass of each kind to size the trials
    telemetry = (
        costs.kinds_per_trial * passes * pass_s if spec.gpu_id is not None and test.telemetry == "separate" else 0.0
    )
    compiled = test.compile_model or test.execution.startswith("compile")
    warmup = test.warmup_batches * batch_seconds(spec)
    return costs.run_setup_s + warmup + sizing + trials * trial_s + telemetry + (costs.compile_s if compiled else 0.0)


# ---- past records --------------------------------------------------------------------------------------------

KEY_COLUMNS = ("patch_size", "depth", "heads", "dim", "mlp_dim", "height", "width", "batch_size", "num_samples",
               "execution", "compile_model", "device", "gpu_name")
RECORDS_SQL = f"""
SELECT {", ".join(KEY_COLUMNS)}, median(duration_s) AS duration_s, median(worker_startup_s) AS startup_s, count(*) AS n
FROM runs WHERE success AND duration_s IS NOT NULL GROUP BY ALL
"""

RecordKey = tuple[Any, ...]


def record_key(spec: RunSpec, gpu_name: str | None) -> RecordKey:
    """What a run's past records are matched on."""
    m, t = spec.model, spec.test
    device = "cpu" if spec.gpu_id is None else "cuda"
    return (m.patch_size, m.depth, m.heads, m.dim, m.mlp_dim, t.tensor_shape[1], t.tensor_shape[2], t.batch_size,
            t.num_samples, t.execution, t.compile_model, device, None if spec.gpu_id is None else gpu_name)


@dataclass
class PastRecords:
    """Median duration and worker start-up of past successful runs, by configuration; ``note`` says where from."""

    durations: dict[RecordKey, tuple[float, float | None, int]] = field(default_factory=dict)
    note: str = "no past records"

    def lookup(self, spec: RunSpec, gpu_name: str | None) -> tuple[float, float | None] | None:
        found = self.durations.get(record_key(spec, gpu_name))
        return None if found is None else (found[0], found[1])


def read_past_records(database: Path | None = None, lock_timeout_s: float = 0.5) -> PastRecords:
    """Past records from the results database, never waiting on a running load: a busy lock, a missing
    database or table gives no records (the cost model) and a note that says why."""
    try:
        import duckdb

        from numa_ops import db
    except ImportError:  # a bare GPU host measuring without the store
        return PastRecords(note="duckdb is not installed here")
    database = Path(database or db.db_path())
    if not database.is_file():
        return PastRecords(note=f"no results database ({Path(database).name}) yet")
    try:
        with db.read_connection(database, lock_timeout_s) as con:
            if not db.table_exists(con, "runs"):
                return PastRecords(note="no runs in the results database")
            rows = con.execute(RECORDS_SQL).fetchall()
    except db.StoreBusyError:
        return PastRecords(note="the results database is busy (a load is writing it), so not read")
    except (duckdb.Error, OSError) as exc:  # a damaged or foreign file: estimate without it
        return PastRecords(note=f"the results database could not be read ({type(exc).__name__})")
    n = len(KEY_COLUMNS)
    durations = {tuple(row[:n]): (float(row[n]), None if row[n + 1] is None else float(row[n + 1]), int(row[n + 2]))
                 for row in rows}
    return PastRecords(durations, f"{len(durations)} configurations in {database}")


# ---- the plan -------------------------------------------------------------------------------------------------


class RunEstimateJson(TypedDict):
    run_id: str
    gpu_s: float
    basis: str  # records | model


class EstimateJson(TypedDict):
    """A :class:`PlanEstimate` as JSON, and ``estimate.json`` (which adds the phase's budget and the studies the
    host skipped; an older one may name its ``source`` instead of its ``basis``)."""

    runs: int
    lanes: int
    worker_starts: int
    gpu_s: float
    startup_s: float
    wall_s: float
    wall_from_start_s: float
    gpu_hours: float
    from_records: int
    basis: str
    lane_end_s: dict[str, float]
    per_run: list[RunEstimateJson]
    max_gpu_hours: NotRequired[float | None]
    skipped_studies: NotRequired[list[SkippedStudyJson]]
    source: NotRequired[str]


@dataclass(frozen=True)
class PlanEstimate:
    """What a plan will cost. ``gpu_s``: the runs' own time (what the report compares with the records'
    durations); ``startup_s``: the worker starts; ``wall_s``: from the start of the first worker to
    the end of the last run. ``estimate.json`` keeps ``wall_s`` as the report measures it, from the first run's start
    (``wall_from_start_s``: with the first worker's start-up)."""

    runs: int
    lanes: int
    worker_starts: int
    gpu_s: float
    startup_s: float
    wall_s: float
    first_run_s: float  # when the first run starts (after its worker's start-up)
    from_records: int  # runs whose seconds came from past records (the rest: the cost model)
    basis: str
    lane_end_s: Mapping[str, float]
    run_s: Mapping[str, float] = field(default_factory=dict)  # run id -> its estimated seconds
    run_from_records: frozenset[str] = frozenset()  # the run ids whose seconds came from past records

    @property
    def gpu_hours(self) -> float:
        """Device time held: the runs and the worker starts, in hours (what ``max_gpu_hours`` bounds)."""
        return (self.gpu_s + self.startup_s) / 3600

    def to_json(self) -> EstimateJson:
        return {
            "runs": self.runs,
            "lanes": self.lanes,
            "worker_starts": self.worker_starts,
            "gpu_s": round(self.gpu_s, 1),
            "startup_s": round(self.startup_s, 1),
            "wall_s": round(self.wall_s - self.first_run_s, 1),
            "wall_from_start_s": round(self.wall_s, 1),
            "gpu_hours": round(self.gpu_hours, 3),
            "from_records": self.from_records,
            "basis": self.basis,
            "lane_end_s": {k: round(v, 1) for k, v in self.lane_end_s.items()},
            "per_run": [
                {"run_id": k, "gpu_s": round(v, 1), "basis": "records" if k in self.run_from_records else "model"}
                for k, v in self.run_s.items()
            ],
        }

    def lines(self, device: str = "GPU") -> list[str]:
        """The estimate as a person reads it; ``device`` "CPU" on a host without a GPU."""
        return [f"estimate: {self.runs} runs on {self.lanes} lane(s), {self.worker_starts} worker start(s)",
                f"  {device} time {_hms(self.gpu_s + self.startup_s)} ({self.gpu_hours:.2f} {device}-hours: runs "
                f"{_hms(self.gpu_s)}, worker starts {_hms(self.startup_s)})",
                f"  wall time {_hms(self.wall_s)}",
                f"  basis: {self.basis}"]


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m{rest % 60:02d}s" if h else f"{rest // 60}m{rest % 60:02d}s"


def _simulate(order: Mapping[int | None, list[Lane]], run_s: Mapping[str, float], start_s: Callable[[Lane], float],
              max_lanes: int) -> tuple[float, float, dict[str, float]]:
    """Wall time of the devices' turns, ``max_lanes`` at once (a shared run goes to the lane that reaches it first);
    when the first run starts; each lane's end."""
    pending = list(order.values())
    slots = max(1, min(max_lanes, len(pending)))
    claimed: set[str] = set()
    ends: dict[str, float] = {}
    # each active turn: (clock, seq, lanes, lane index, run index, started?)
    heap: list[tuple[float, int, int, int, bool]] = []
    turns: list[list[Lane]] = []
    finished_at: list[float] = []
    first_run = math.inf

    def start(turn: list[Lane], at: float) -> None:
        turns.append(turn)
        heapq.heappush(heap, (at, len(turns) - 1, 0, 0, False))

    for _ in range(slots):
        if pending:
            start(pending.pop(0), 0.0)
    while heap:
        clock, t, li, ri, started = heapq.heappop(heap)
        lanes = turns[t]
        if li >= len(lanes):
            finished_at.append(clock)
            if pending:
                start(pending.pop(0), clock)
            continue
        lane = lanes[li]
        if not started:
            heapq.heappush(heap, (clock + start_s(lane), t, li, 0, True))
            continue
        if ri >= len(lane.runs):
            ends[lane.name] = clock
            heapq.heappush(heap, (clock, t, li + 1, 0, False))
            continue
        spec = lane.runs[ri]
        took = 0.0
        if spec.run_id not in claimed:
            claimed.add(spec.run_id)
            took = run_s[spec.run_id]
            first_run = min(first_run, clock)
        heapq.heappush(heap, (clock + took, t, li, ri + 1, True))
    return max(finished_at, default=0.0), (0.0 if first_run == math.inf else first_run), ends


def estimate_plan(lanes: list[Lane], max_lanes: int, gpu_names: Mapping[int, str] | None = None,
                  records: PastRecords | None = None) -> PlanEstimate:
    """The plan's runs, lanes, worker starts, GPU time and wall time (see the module's docstring)."""
    names = dict(gpu_names or {})
    records = records or PastRecords()
    run_s: dict[str, float] = {}
    starts: dict[str, list[float]] = {}
    from_records = 0
    recorded: set[str] = set()
    for spec in distinct_runs(lanes):
        past = None if spec.placement_mode == "paired" else records.lookup(
            spec, names.get(spec.gpu_id) if spec.gpu_id is not None else None)
        if past is not None:
            from_records += 1
            recorded.add(spec.run_id)
            run_s[spec.run_id] = past[0]
            if past[1] is not None:
                starts.setdefault(spec.lane, []).append(past[1])
        else:
            run_s[spec.run_id] = model_run_seconds(spec)

    def start_s(lane: Lane) -> float:
        seen = starts.get(lane.name)
        if seen:
            return sorted(seen)[len(seen) // 2]
        return (CPU if lane.gpu_id is None else CUDA).worker_start_s

    wall, first_run, ends = _simulate(lanes_by_device(lanes), run_s, start_s, max_lanes)
    total = len(run_s)
    if not from_records:
        basis = f"cost model ({records.note})"
    else:
        basis = f"past records for {from_records} of {total} runs ({records.note})" + (
            ", the cost model for the rest" if from_records < total else "")
    return PlanEstimate(
        runs=total,
        lanes=len(lanes),
        worker_starts=len(lanes),
        gpu_s=sum(run_s.values()),
        startup_s=sum(start_s(lane) for lane in lanes),
        wall_s=wall,
        first_run_s=first_run,
        from_records=from_records,
        basis=basis,
        lane_end_s=ends,
        run_s=run_s,
        run_from_records=frozenset(recorded),
    )


def gpu_names_of(topology: Any) -> dict[int, str]:
    """GPU index -> name, from a :class:`numa_ops.topology.Topology`."""
    return {gpu.index: gpu.name for gpu in getattr(topology, "gpus", [])}


class OverBudget(ValueError):
    """A phase whose estimate exceeds its ``max_gpu_hours``: refused before anything starts."""


def check_budget(estimate: PlanEstimate, max_gpu_hours: float | None, what: str) -> None:
    """Refuse ``estimate`` over ``max_gpu_hours`` (None: no limit), naming both numbers."""
    if max_gpu_hours is not None and estimate.gpu_hours > max_gpu_hours:
        raise OverBudget(
            f"{what} is estimated at {estimate.gpu_hours:.2f} GPU-hours ({estimate.runs} runs, {estimate.basis}), "
            f"over its max_gpu_hours of {max_gpu_hours:g} in phases.yaml; nothing was started. Choose fewer "
            "studies or sweep points, or raise max_gpu_hours"
        )
