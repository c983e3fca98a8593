"""Run one lane's bound worker to the end: stream its log, enforce each run's timeout, survive crashes.

The lane loop over the worker's events; the process itself is :mod:`numa_ops.worker_process` and the
profiler around it :mod:`numa_ops.nsys`. The worker runs in its own process session, so a timeout or a
kill ends its whole process group (numactl, python, anything it started). A run that times out or dies
is recorded as failed with the reason, and a fresh worker takes the lane's remaining runs. Runs that
already have a successful record are never measured again.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypedDict

from filelock import FileLock, Timeout

from numa_ops import nsys, paths, results, settings
from numa_ops.launch import BindingRefused, worker_command
from numa_ops.paths import safe_name
from numa_ops.specs import Lane, RunSpec, runs_to_json
from numa_ops.worker import coordination, protocol
from numa_ops.worker.protocol import Event, parse_event
from numa_ops.worker_process import WorkerProcess, exit_reason


def startup_timeout_s() -> float:
    """How long a worker may take to import and initialise (``NUMA_LAB_STARTUP_TIMEOUT_S``)."""
    return settings.startup_timeout_s()


@contextmanager
def device_lock(lane: Lane, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the lane's device (a GPU, or a CPU node for CPU lanes) so no two timed lanes share it.

    A file lock under the outputs folder: it holds across tasks, DAG runs and the command line on
    this host. ``hardware.share_gpu: true`` in the configs of all the lane's runs opts out (to measure
    contention); a lane that mixes the two takes the lock.
    """
    if lane.runs and all(r.share_gpu for r in lane.runs):
        yield
        return
    key = f"cpu-node{lane.cpu_node}" if lane.gpu_id is None else f"gpu{lane.gpu_id}"
    lock_dir = paths.outputs_dir() / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_dir / f"{key}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"[{lane.name}] waiting for {key}: another lane is measuring on it")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


class LaneOutcomeJson(TypedDict):
    """A :class:`LaneOutcome` as the lane task's XCom holds it."""

    lane: str
    planned: int
    skipped: int
    succeeded: list[str]
    failed: list[str]
    elsewhere: list[str]
    workers_started: int
    startup_s: list[float]
    wall_s: float


class _PairedArgs(TypedDict, total=False):
    """The paired kind and thread nodes :func:`numa_ops.launch.worker_command` takes for a paired lane."""

    paired: str
    thread_nodes: tuple[int, ...]


@dataclass
class LaneOutcome:
    """What happened to a lane's runs in this attempt."""

    lane: str
    planned: int
    skipped: int = 0
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # pooled runs another lane took
    workers_started: int = 0
    startup_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def to_dict(self) -> LaneOutcomeJson:
        return LaneOutcomeJson(**self.__dict__)


@dataclass
class _WorkerTurn:
    """One worker over a stretch of the lane's runs: what it settled, what it measures now, when it is overdue."""

    runs: list[RunSpec]
    deadline: float
    settled: set[str] = field(default_factory=set)
    current: RunSpec | None = None
    ready: bool = False
    failure: str | None = None

    def run(self, run_id: str) -> RunSpec | None:
        return next((r for r in self.runs if r.run_id == run_id), None)

    def unsettled(self) -> list[RunSpec]:
        return [r for r in self.runs if r.run_id not in self.settled]


def _same_profile_stretch(todo: list[RunSpec]) -> list[RunSpec]:
    """The runs at the head of ``todo`` with the first run's profile settings: one worker's share (a lane may
    hold several studies, each with its own ``profile``)."""
    return list(itertools.takewhile(lambda r: r.profile == todo[0].profile, todo))


class LaneSupervisor:
    """Runs a lane (see :func:`numa_ops.plan.build_plan`) and records every run's fate.

    The worker's events (:mod:`numa_ops.worker.protocol`) each have one handler, ``_on_<event>``.
    """

    def __init__(
        self,
        lane: Lane,
        folder_path: Path,
        log: Callable[[str], None] = print,
        on_settled: Callable[[str, bool], None] | None = None,
    ):
        self.on_settled = on_settled or (lambda run_id, ok: None)  # called once per run as it settles
        self.lane = lane
        self.name = safe_name(lane.name, "lane")
        self.folder_path = folder_path
        self.log = log
        self._worker: WorkerProcess | None = None
        self._current: RunSpec | None = None
        self._stopped: str | None = None
        self._lock = threading.Lock()
        self._started_epoch = 0.0  # when this attempt at the lane began (a pooled run failed since is not retried)
        self._settled_before = 0  # runs settled before the current worker (for "run 3/8")
        self._handlers: dict[str, Callable[[Event, _WorkerTurn, LaneOutcome], None]] = {
            protocol.READY: self._on_ready,
            protocol.SKIP: self._on_skip,
            protocol.START: self._on_start,
            protocol.WAITING: self._on_waiting,
            protocol.TIMING: self._on_timing,
            protocol.END: self._on_end,
            protocol.DONE: lambda event, turn, outcome: None,
        }

    # -- public -------------------------------------------------------------------------------
    def run(self) -> LaneOutcome:
        """Measure every run of the lane that has no successful record yet."""
        t0 = time.monotonic()
        self._started_epoch = time.time()
        runs = self.lane.runs
        todo = [r for r in runs if not results.successful(self.folder_path, r.run_id)]
        outcome = LaneOutcome(self.name, len(runs), skipped=len(runs) - len(todo))
        if outcome.skipped:
            self.log(f"[{self.name}] {outcome.skipped} of {len(runs)} runs already have a successful record: skipped")
        self._settled_before = outcome.skipped
        with device_lock(self.lane, self.log) if todo and not self._stopped else nullcontext():
            while todo and not self._stopped:
                finished = self._measure_stretch(_same_profile_stretch(todo), outcome)
                self._settled_before += len(finished)
                todo = [r for r in todo if r.run_id not in finished]
        if self._stopped:
            for spec in todo:
                self._record_failure(spec, self._stopped, outcome)
        outcome.wall_s = time.monotonic() - t0
        return outcome

    def stop(self, reason: str = "killed: the task was stopped") -> None:
        """End the worker's process group now (Airflow's ``on_kill``); the current run is recorded as killed.

        The record is written here, before returning: the task's own process may be killed right
        after ``on_kill``, before the lane's loop would get to it.
        """
        with self._lock:
            self._stopped = reason
            worker, current = self._worker, self._current
        if worker is not None:
            worker.kill_group()
        if current is not None:
            self._write_failed(current, reason)

    # -- one stretch of runs --------------------------------------------------------------------
    def _measure_stretch(self, runs: list[RunSpec], outcome: LaneOutcome) -> set[str]:
        """One worker over ``runs`` (or each recorded as failed where the lane cannot start one); the run_ids
        it settled (measured or failed)."""
        refusal = self._binding_refusal() or nsys.refusal(runs[0].profile, self.folder_path)
        if refusal:
            for spec in runs:
                self._record_failure(spec, refusal, outcome)
            return {r.run_id for r in runs}
        return self._run_worker(runs, outcome)

    def _run_worker(self, runs: list[RunSpec], outcome: LaneOutcome) -> set[str]:
        """One worker process over ``runs``, its events handled as they come; returns the run_ids it settled."""
        session = nsys.NsysSession(runs[0].profile, self.folder_path, self.name, self.log)
        worker = self._start(runs, session)
        outcome.workers_started += 1
        turn = _WorkerTurn(runs, deadline=time.monotonic() + startup_timeout_s())
        with (self.folder_path / "experiment.log").open("a") as log_file:
            for line in worker.lines():
                if line:
                    self._on_line(line, log_file, turn, outcome)
                self._enforce_deadline(worker, turn)
            returncode = worker.wait()
        with self._lock:
            self._worker = None
        self._settle_the_rest(turn, returncode, outcome)
        session.finish(runs, any(r.run_id in outcome.failed for r in runs))  # after the failures: retention=failed
        return turn.settled

    def _start(self, runs: list[RunSpec], session: nsys.NsysSession) -> WorkerProcess:
        stamp = int(time.time() * 1000)
        runs_file = self.folder_path / "lanes" / f"{self.name}.{stamp}.json"
        results.write_json_atomic(runs_file, runs_to_json(runs))
        session.wrap(stamp)
        launch = worker_command(runs_file, self.folder_path, self.lane.gpu_id, self.lane.cpu_node, self.lane.mem_node,
                                profile=session.prefix, pool_node=self._pool_node(), **self._paired())
        self.log(
            f"[{self.name}] starting worker for {len(runs)} runs: {launch.binding}, "
            f"CUDA_VISIBLE_DEVICES={launch.env['CUDA_VISIBLE_DEVICES']!r}" + (" under nsys" if session.prefix else "")
        )
        env = {**os.environ, **launch.env, settings.WORKER_PROFILE: json.dumps(session.note),
               settings.WORKER_LANE_STARTED: repr(self._started_epoch)}
        worker = WorkerProcess(launch.argv, env, cwd=self.folder_path)
        with self._lock:
            self._worker = worker
        return worker

    def _on_line(self, line: str, log_file: IO[str], turn: _WorkerTurn, outcome: LaneOutcome) -> None:
        """Log a line of the worker's into experiment.log; an event goes to its handler, other lines to the log."""
        log_file.write(f"{results.now()} [{self.name}] {line}\n")
        log_file.flush()
        event = parse_event(line)
        if event is None:
            self.log(f"[{self.name}] {line}")
            return
        handler = self._handlers.get(event["event"])
        if handler is not None:
            handler(event, turn, outcome)

    def _enforce_deadline(self, worker: WorkerProcess, turn: _WorkerTurn) -> None:
        """Past the deadline (start-up, or the current run's timeout): end the worker's process group."""
        if time.monotonic() <= turn.deadline or turn.failure is not None:
            return
        if turn.current is not None:
            turn.failure = f"timeout: run exceeded timeout_s={turn.current.test.timeout_s}"
        else:
            turn.failure = f"timeout: worker did not become ready within {startup_timeout_s():.0f} s"
        how = worker.kill_group()
        self.log(f"[{self.name}] {turn.failure}; worker process group ended ({how})")

    def _settle_the_rest(self, turn: _WorkerTurn, returncode: int, outcome: LaneOutcome) -> None:
        """After the worker ended: the run it was measuring fails with the reason; if it never became ready,
        so does every run it was given (rather than restarting a worker that cannot start)."""
        failure = turn.failure
        if returncode != 0 and failure is None:
            failure = self._stopped or exit_reason(returncode)
        unsettled = turn.unsettled()
        if failure is None and unsettled:
            failure = "worker exited before measuring this run"
        current = turn.current
        if current is not None and current.run_id not in turn.settled:
            coordination.leave_barrier(self.folder_path, current)
            self._record_failure(current, failure or "worker ended mid-run", outcome)
            turn.settled.add(current.run_id)
        elif unsettled and not turn.ready and not self._stopped:
            for spec in unsettled:
                self._record_failure(spec, f"worker failed to start: {failure}", outcome)
                turn.settled.add(spec.run_id)

    # -- the worker's events (numa_ops.worker.protocol) ---------------------------------------------
    def _on_ready(self, event: Event, turn: _WorkerTurn, outcome: LaneOutcome) -> None:
        turn.ready = True
        outcome.startup_s.append(event["startup_s"])
        self.log(f"[{self.name}] worker ready after {event['startup_s']:.1f} s on {event['device']}")
        turn.deadline = float("inf")

    def _on_skip(self, event: Event, turn: _WorkerTurn, outcome: LaneOutcome) -> None:
        turn.settled.add(event["run_id"])
        outcome.elsewhere.append(event["run_id"])
        self.log(f"[{self.name}] pooled run {event['run_id']}: {event['reason']}")

    def _on_start(self, event: Event, turn: _WorkerTurn, outcome: LaneOutcome) -> None:
        turn.current = turn.run(event["run_id"])
        with self._lock:
            self._current = turn.current
        timeout = turn.current.test.timeout_s if turn.current else startup_timeout_s()
        turn.deadline = time.monotonic() + timeout
        self.log(f"[{self.name}] run {self._settled_before + len(turn.settled) + 1}/{len(self.lane.runs)} "
                 f"started: {event['run_id']}")

    def _on_waiting(self, event: Event, turn: _WorkerTurn, outcome: LaneOutcome) -> None:
        """A pattern's run waits for its other GPUs: the barrier's limit, then the pattern lock's."""
        if turn.current is None:
            return
        turn.deadline = time.monotonic() + 2 * event["limit_s"] + 60
        self.log(f"[{self.name}] run {event['run_id']} waiting for its pattern (up to {event['limit_s']:.0f} s)")

    def _on_timing(self, event: Event, turn: _WorkerTurn, outcome: LaneOutcome) -> None:
        """The pattern is complete: the run's own timeout starts again."""
        if turn.current is not None:
            turn.deadline = time.monotonic() + turn.current.test.timeout_s

    def _on_end(self, event: Event, turn: _WorkerTurn, outcome: LaneOutcome) -> None:
        turn.settled.add(event["run_id"])
        (outcome.succeeded if event["success"] else outcome.failed).append(event["run_id"])
        self.on_settled(event["run_id"], bool(event["success"]))
        rate = event.get("samples_per_s")
        status = f"ok, {rate:.1f} samples/s" if event["success"] else f"FAILED: {event.get('error')}"
        self.log(f"[{self.name}] run {self._settled_before + len(turn.settled)}/{len(self.lane.runs)} {status} "
                 f"({event['duration']:.1f} s) {event['run_id']}")
        turn.current, turn.deadline = None, float("inf")
        with self._lock:
            self._current = None

    # -- records and placement ----------------------------------------------------------------
    def _write_failed(self, spec: RunSpec, reason: str) -> None:
        """Record ``spec`` as failed for ``reason``, unless the worker recorded it as a success first."""
        if not results.successful(self.folder_path, spec.run_id):
            results.write_record(self.folder_path, results.failed_record(spec, reason))

    def _record_failure(self, spec: RunSpec, reason: str, outcome: LaneOutcome) -> None:
        self._write_failed(spec, reason)
        outcome.failed.append(spec.run_id)
        self.on_settled(spec.run_id, False)
        self.log(f"[{self.name}] run {spec.run_id} FAILED: {reason}")

    def _pool_node(self) -> int | None:
        """Where the host pool goes when the lane binds it alone (``hardware.placement=pool``), else None."""
        return self.lane.pool_node if self.lane.placement_mode == "pool" else None

    def _paired(self) -> _PairedArgs:
        """The paired kind and thread nodes of a ``hardware.placement=paired`` lane (nothing otherwise)."""
        if self.lane.placement_mode != "paired":
            return {}
        kind = self.lane.runs[0].paired if self.lane.runs else None
        return {"paired": kind or "memory", "thread_nodes": self.lane.thread_nodes}

    def _binding_refusal(self) -> str | None:
        """Why this host cannot set up the lane's placement (pool placement without numactl), or None."""
        try:
            worker_command(self.folder_path / "lanes" / "check.json", self.folder_path, self.lane.gpu_id,
                           self.lane.cpu_node, self.lane.mem_node, pool_node=self._pool_node(), **self._paired())
        except BindingRefused as exc:
            return str(exc)
        return None
