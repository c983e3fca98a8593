"""Run one lane's bound worker to the end: stream its log, enforce each run's timeout, survive crashes.

The worker runs in its own process session, so a timeout or a kill ends its whole process group
(numactl, python, anything it started). A run that times out or dies is recorded as failed with
the reason, and a fresh worker takes the lane's remaining runs. Runs that already have a
successful record are never measured again.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from numa_ops import paths, results, settings
from numa_ops.launch import BindingRefused, find_nsys, nsys_prefix, worker_command
from numa_ops.paths import safe_name
from numa_ops.worker import coordination
from numa_ops.worker.protocol import parse_event

KILL_GRACE_S = 5.0


def startup_timeout_s() -> float:
    """How long a worker may take to import and initialise (``NUMA_LAB_STARTUP_TIMEOUT_S``)."""
    return settings.startup_timeout_s()


@contextmanager
def device_lock(lane: dict[str, Any], log: Callable[[str], None]) -> Iterator[None]:
    """Hold the lane's device (a GPU, or a CPU node for CPU lanes) so no two timed lanes share it.

    A file lock under the outputs folder: it holds across tasks, DAG runs and the command line on
    this host. ``hardware.share_gpu: true`` in the configs of all the lane's runs opts out (to measure
    contention); a lane that mixes the two takes the lock.
    """
    if lane["runs"] and all((r.get("hardware") or {}).get("share_gpu") for r in lane["runs"]):
        yield
        return
    key = f"cpu-node{lane['cpu_node']}" if lane["gpu_id"] is None else f"gpu{lane['gpu_id']}"
    lock_dir = paths.outputs_dir() / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_dir / f"{key}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"[{lane['name']}] waiting for {key}: another lane is measuring on it")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _kill_group(proc: subprocess.Popen, grace_s: float = KILL_GRACE_S) -> str:
    """End the worker's whole process group: SIGTERM, then SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return "already exited"
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already exited"
    try:
        proc.wait(timeout=grace_s)
        return "SIGTERM"
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        return "SIGKILL"


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"worker killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"worker killed by signal {-returncode}"
    return f"worker exited with code {returncode}"


class LaneSupervisor:
    """Runs a lane (see :func:`numa_ops.plan.build_plan`) and records every run's fate."""

    def __init__(
        self,
        lane: dict[str, Any],
        folder_path: Path,
        log: Callable[[str], None] = print,
        on_settled: Callable[[str, bool], None] | None = None,
    ):
        self.on_settled = on_settled or (lambda run_id, ok: None)  # called once per run as it settles
        self.lane = lane
        self.name = safe_name(lane["name"], "lane")
        self.folder_path = folder_path
        self.log = log
        self._proc: subprocess.Popen | None = None
        self._current: dict[str, Any] | None = None
        self._stopped: str | None = None
        self._lock = threading.Lock()

    # -- public -------------------------------------------------------------------------------
    def run(self) -> LaneOutcome:
        """Measure every run of the lane that has no successful record yet."""
        t0 = time.monotonic()
        self._started_epoch = time.time()
        runs = self.lane["runs"]
        todo = [r for r in runs if not results.successful(self.folder_path, r["run_id"])]
        outcome = LaneOutcome(self.name, len(runs), skipped=len(runs) - len(todo))
        if outcome.skipped:
            self.log(f"[{self.name}] {outcome.skipped} of {len(runs)} runs already have a successful record: skipped")
        done = outcome.skipped
        with device_lock(self.lane, self.log) if todo and not self._stopped else nullcontext():
            while todo and not self._stopped:
                # one worker per stretch of runs with the same profile settings (a lane may hold several studies)
                profile = todo[0].get("profile")
                batch = list(itertools.takewhile(lambda r, p=profile: r.get("profile") == p, todo))
                refusal = self._binding_refusal() or self._profiling_refusal(batch)
                if refusal:
                    for spec in batch:
                        self._record_failure(spec, refusal, outcome)
                    finished = {r["run_id"] for r in batch}
                else:
                    finished = self._run_worker(batch, outcome, done, len(runs))
                done += len(finished)
                todo = [r for r in todo if r["run_id"] not in finished]
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
            proc, current = self._proc, self._current
        if proc is not None:
            _kill_group(proc)
        if current is not None:
            self._write_failed(current, reason)

    # -- internals ----------------------------------------------------------------------------
    def _write_failed(self, spec: dict[str, Any], reason: str) -> None:
        """Record ``spec`` as failed for ``reason``, unless the worker recorded it as a success first."""
        if not results.successful(self.folder_path, spec["run_id"]):
            results.write_json_atomic(results.record_path(self.folder_path, spec["run_id"]),
                                      results.failed_record(spec, reason))

    def _record_failure(self, spec: dict[str, Any], reason: str, outcome: LaneOutcome) -> None:
        self._write_failed(spec, reason)
        outcome.failed.append(spec["run_id"])
        self.on_settled(spec["run_id"], False)
        self.log(f"[{self.name}] run {spec['run_id']} FAILED: {reason}")

    def _profiling(self, todo: list[dict[str, Any]]) -> tuple[str | None, str | None]:
        """(nsys binary, warning) for the lane's profile settings; a warning means: run unprofiled."""
        prof = todo[0].get("profile") or {} if todo else {}
        mode = prof.get("nsys", "off")
        if mode == "off":
            return None, None
        nsys = find_nsys()
        if nsys is None and settings.nsys_override():
            return None, f"nsys not found: NUMA_LAB_NSYS={settings.nsys_override()} is not an executable file"
        if nsys is None:
            return None, ("nsys not found (NUMA_LAB_NSYS, PATH, /opt/nvidia/nsight-systems, /usr/local/cuda/bin, "
                          "/opt/nvidia/nsight-compute/*/host/target-linux-x64)")
        free_gb = shutil.disk_usage(self.folder_path).free / 1e9
        if free_gb < prof.get("min_free_gb", 10.0):
            return None, (f"only {free_gb:.1f} GB free under {self.folder_path}, below profile.min_free_gb="
                          f"{prof.get('min_free_gb')} (nsys reports take 1-2 GB each)")
        return nsys, None

    def _pool_node(self) -> int | None:
        """Where the host pool goes when the lane binds it alone (``hardware.placement=pool``), else None."""
        return self.lane.get("pool_node") if self.lane.get("placement_mode") == "pool" else None

    def _binding_refusal(self) -> str | None:
        """Why this host cannot set up the lane's placement (pool placement without numactl), or None."""
        try:
            worker_command(self.folder_path / "lanes" / "check.json", self.folder_path, self.lane["gpu_id"],
                           self.lane["cpu_node"], self.lane["mem_node"], pool_node=self._pool_node())
        except BindingRefused as exc:
            return str(exc)
        return None

    def _profiling_refusal(self, todo: list[dict[str, Any]]) -> str | None:
        """With ``profile.nsys: required``, the reason no run can start unprofiled."""
        if not todo or (todo[0].get("profile") or {}).get("nsys") != "required":
            return None
        _, warning = self._profiling(todo)
        return f"profile.nsys=required: {warning}" if warning else None

    def _start(self, todo: list[dict[str, Any]]) -> subprocess.Popen:
        lanes_dir = self.folder_path / "lanes"
        stamp = int(time.time() * 1000)
        runs_file = lanes_dir / f"{self.name}.{stamp}.json"
        results.write_json_atomic(runs_file, todo)
        nsys, warning = self._profiling(todo)
        profile_note: dict[str, Any] = {"nsys": (todo[0].get("profile") or {}).get("nsys", "off"), "warning": None}
        prefix = None
        self._report = None
        if nsys:
            self._report = self.folder_path / "nsys" / f"{self.name}.{stamp}"
            self._report.parent.mkdir(parents=True, exist_ok=True)
            prefix = nsys_prefix(nsys, self._report)
            profile_note.update(nsys_binary=nsys, report=str(self._report) + ".nsys-rep")
        elif warning:
            profile_note["warning"] = f"profile.nsys=on but {warning}: ran without profiling"
            self.log(f"[{self.name}] WARNING {profile_note['warning']}")
        launch = worker_command(
            runs_file, self.folder_path, self.lane["gpu_id"], self.lane["cpu_node"], self.lane["mem_node"],
            profile=prefix, pool_node=self._pool_node(),
        )
        self.log(f"[{self.name}] starting worker for {len(todo)} runs: {launch.binding}, "
                 f"CUDA_VISIBLE_DEVICES={launch.env['CUDA_VISIBLE_DEVICES']!r}" + (" under nsys" if nsys else ""))
        return subprocess.Popen(
            launch.argv,
            env={
                **os.environ, **launch.env, settings.WORKER_PROFILE: json.dumps(profile_note),
                settings.WORKER_LANE_STARTED: repr(getattr(self, "_started_epoch", 0.0)),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
            bufsize=1,
            cwd=self.folder_path,
        )

    def _run_worker(self, todo: list[dict[str, Any]], outcome: LaneOutcome, done: int, total: int) -> set[str]:
        """One worker process over ``todo``; returns the run_ids it settled (measured or failed)."""
        by_id = {r["run_id"]: r for r in todo}
        settled: set[str] = set()
        proc = self._start(todo)
        with self._lock:
            self._proc = proc
        outcome.workers_started += 1
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=self._read, args=(proc, lines), daemon=True)
        reader.start()
        log_path = self.folder_path / "experiment.log"
        current: dict[str, Any] | None = None
        deadline = time.monotonic() + startup_timeout_s()
        failure: str | None = None
        ready = False
        with log_path.open("a") as log_file:
            while True:
                try:
                    line = lines.get(timeout=0.2)
                except queue.Empty:
                    line = ""
                if line is None:  # worker's stdout closed
                    break
                if line:
                    log_file.write(f"{results.now()} [{self.name}] {line}\n")
                    log_file.flush()
                    event = parse_event(line)
                    if event is None:
                        self.log(f"[{self.name}] {line}")
                    elif event["event"] == "ready":
                        ready = True
                        outcome.startup_s.append(event["startup_s"])
                        self.log(f"[{self.name}] worker ready after {event['startup_s']:.1f} s on {event['device']}")
                        deadline = float("inf")
                    elif event["event"] == "skip":
                        settled.add(event["run_id"])
                        outcome.elsewhere.append(event["run_id"])
                        self.log(f"[{self.name}] pooled run {event['run_id']}: {event['reason']}")
                    elif event["event"] == "start":
                        current = by_id.get(event["run_id"])
                        with self._lock:
                            self._current = current
                        timeout = current["test"]["timeout_s"] if current else startup_timeout_s()
                        deadline = time.monotonic() + timeout
                        self.log(f"[{self.name}] run {done + len(settled) + 1}/{total} started: {event['run_id']}")
                    elif event["event"] == "waiting" and current is not None:  # for a pattern's other GPUs
                        deadline = time.monotonic() + 2 * event["limit_s"] + 60  # the barrier, then the lock
                        self.log(f"[{self.name}] run {event['run_id']} waiting for its pattern (up to {event['limit_s']:.0f} s)")
                    elif event["event"] == "timing" and current is not None:  # the run's own timeout starts again
                        deadline = time.monotonic() + current["test"]["timeout_s"]
                    elif event["event"] == "end":
                        settled.add(event["run_id"])
                        (outcome.succeeded if event["success"] else outcome.failed).append(event["run_id"])
                        self.on_settled(event["run_id"], bool(event["success"]))
                        rate = event.get("samples_per_s")
                        status = f"ok, {rate:.1f} samples/s" if event["success"] else f"FAILED: {event.get('error')}"
                        self.log(f"[{self.name}] run {done + len(settled)}/{total} {status} "
                                 f"({event['duration']:.1f} s) {event['run_id']}")
                        current, deadline = None, float("inf")
                        with self._lock:
                            self._current = None
                if time.monotonic() > deadline and failure is None:
                    if current is not None:
                        failure = f"timeout: run exceeded timeout_s={current['test']['timeout_s']}"
                    else:
                        failure = f"timeout: worker did not become ready within {startup_timeout_s():.0f} s"
                    how = _kill_group(proc)
                    self.log(f"[{self.name}] {failure}; worker process group ended ({how})")
            returncode = proc.wait()
        reader.join(timeout=5)
        with self._lock:
            self._proc = None
        if returncode != 0 and failure is None:
            failure = self._stopped or _exit_reason(returncode)
        unsettled = [r for r in todo if r["run_id"] not in settled]
        if failure is None and unsettled:
            failure = "worker exited before measuring this run"
        if current is not None and current["run_id"] not in settled:
            coordination.leave_barrier(self.folder_path, current)
            self._record_failure(current, failure or "worker ended mid-run", outcome)
            settled.add(current["run_id"])
        elif unsettled and not ready and not self._stopped:
            # The worker never became ready: every run it was given fails for the same reason,
            # rather than restarting a worker that cannot start.
            for spec in unsettled:
                self._record_failure(spec, f"worker failed to start: {failure}", outcome)
                settled.add(spec["run_id"])
        self._retain_report(todo, outcome)  # after the failures above: retention=failed keeps their report
        return settled

    def _note_report(self, todo: list[dict[str, Any]], report: Path) -> None:
        """Say in this worker's records what nsys really left: a report, only its raw capture, or nothing."""
        rep, raw = report.with_name(report.name + ".nsys-rep"), report.with_name(report.name + ".qdstrm")
        if rep.is_file():
            produced = {"report": str(rep), "report_bytes": rep.stat().st_size, "warning": None}
        elif raw.is_file():
            produced = {"report": None, "raw_capture": str(raw), "raw_capture_bytes": raw.stat().st_size,
                        "warning": "nsys wrote only its raw .qdstrm capture (its importer failed): no .nsys-rep"}
        else:
            produced = {"report": None, "warning": "nsys produced no report"}
        for spec in todo:
            path = results.record_path(self.folder_path, spec["run_id"])
            try:
                rec = results.read_record(path)
            except ValueError:
                continue
            if rec is not None and rec.get("profile", {}).get("report") == str(rep):  # measured by this worker
                rec["profile"] = {**rec["profile"], **produced}
                results.write_json_atomic(path, rec)
        if produced["warning"]:
            self.log(f"[{self.name}] WARNING {produced['warning']}")

    def _retain_report(self, todo: list[dict[str, Any]], outcome: LaneOutcome) -> None:
        """Apply ``profile.retention`` to this worker's nsys report."""
        report = getattr(self, "_report", None)
        if report is None:
            return
        self._note_report(todo, report)
        retention = (todo[0].get("profile") or {}).get("retention", "all")
        failed = any(r["run_id"] in outcome.failed for r in todo)
        if retention == "none" or (retention == "failed" and not failed):
            for path in report.parent.glob(report.name + ".*"):
                path.unlink(missing_ok=True)
            self.log(f"[{self.name}] nsys report {report.name} removed (profile.retention={retention})")

    @staticmethod
    def _read(proc: subprocess.Popen, lines: queue.Queue) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.rstrip("\n"))
        lines.put(None)
