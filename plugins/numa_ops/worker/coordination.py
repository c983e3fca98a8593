"""How the workers of several lanes coordinate through their run folder.

- **Claims** (``hardware.spread``): a pooled run is offered to every GPU's lane; the first worker to
  reach it takes an exclusive ``flock`` on ``claims/<run_id>.lock`` for as long as it measures. The
  kernel drops the lock if the worker dies, so a crash never leaves a run claimed forever.
- **Barriers** (``hardware.together``): the lanes of a multi-GPU pattern each write
  ``barriers/<group>/<lane>`` when their run is warmed up and ready to time, and start timing once
  every member has arrived, so the GPUs' timed trials overlap.
- **The pattern lock** (``hardware.together``): a pattern study compares GPUs measured alone with
  the same GPUs measured together, so each of its runs, or each pattern as a whole, holds
  ``<outputs>/.locks/patterns.lock`` while it measures: a GPU "alone" is alone among pattern runs.
  A pattern's first lane (by name) takes it once every member has arrived (so no lane holds it
  while waiting for another), then says go, and lets go once every member has written
  ``barriers/<group>/<lane>.done`` or has a failed record (it gave up, or its worker died).

Locks are ``filelock`` locks (``flock`` on Linux): the kernel drops them when a worker dies.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Required, TypedDict

from filelock import FileLock, Timeout

from numa_ops import paths, results
from numa_ops.specs import PatternRef, RunSpec
from numa_ops.worker import protocol

POLL_S = 0.001
# A member waits for go this long beyond the leader's own limit on the pattern lock, so that the
# leader, not the member, is the one to give up (and record why) when the lock never comes.
GO_GRACE_S = 10.0


class BarrierTimeout(RuntimeError):
    """Some lanes of a multi-GPU pattern never reached the barrier."""


def claim(folder_path: Path, spec: RunSpec, since: float) -> FileLock | str:
    """Take a pooled run, or say why another lane has it.

    ``since``: when this lane's supervisor started; a failed record newer than that means another
    lane already tried the run in this attempt (an older failure is tried again, as on a retry).
    """
    run_id = spec.run_id
    path = paths.inside(folder_path, "claims", paths.safe_name(run_id, "run_id") + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return "being measured by another lane"
    try:
        record = results.read_record(results.record_path(folder_path, run_id))
    except ValueError:
        record = None
    if record is not None:
        where = record.lane
        mtime = results.record_path(folder_path, run_id).stat().st_mtime
        if record.success:
            verdict = f"already measured on {where}"
        elif mtime >= since:
            verdict = f"already failed on {where} in this attempt: {record.error}"
        else:
            verdict = ""
        if verdict:
            lock.release()
            return verdict
    return lock


def _barrier_dir(folder_path: Path, group_id: str) -> Path:
    return paths.inside(folder_path, "barriers", paths.safe_name(group_id, "group"))


def _failed_since(folder_path: Path, run_id: str, since: float) -> str | None:
    """The error of ``run_id``'s failed record if that record was written at ``since`` or later."""
    path = results.record_path(folder_path, run_id)
    try:
        if path.stat().st_mtime < since:
            return None
        record = results.read_record(path)
    except (OSError, ValueError):
        return None
    if record and not record.success:
        return str(record.error)
    return None


class _Arrival:
    """One lane at its pattern's barrier: the other lanes' runs it waits for, and how it gives up."""

    def __init__(self, folder_path: Path, spec: RunSpec, group: PatternRef):
        self.folder_path, self.spec, self.group = folder_path, spec, group
        self.here = _barrier_dir(folder_path, group.id)
        self.here.mkdir(parents=True, exist_ok=True)
        self.arrived_at = time.time()
        results.write_json_atomic(self.here / spec.lane, {"pid": os.getpid(), "arrived_at": self.arrived_at})
        self.others = {lane: run_id for lane, run_id in group.runs.items() if lane != spec.lane}

    def partner_failed(self) -> str | None:
        """Why another lane's run of the pattern failed since this lane arrived, or None."""
        for lane, run_id in self.others.items():
            error = _failed_since(self.folder_path, run_id, self.arrived_at)
            if error is not None:
                return f"{lane}'s run of the pattern failed: {error}"
        return None

    def wait(self, what: str, ready: Callable[[], bool], limit_s: float) -> None:
        """Until ``ready()``; leave the barrier and raise :class:`BarrierTimeout` when a partner's run failed or
        ``limit_s`` has passed (``what`` says what did not happen)."""
        checked = time.monotonic()
        deadline = checked + limit_s
        while not ready():
            if time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                failure = self.partner_failed()
                if failure:
                    leave_barrier(self.folder_path, self.spec)
                    raise BarrierTimeout(f"barrier of group {self.group.id}: {failure}")
            if time.monotonic() > deadline:
                leave_barrier(self.folder_path, self.spec)
                raise BarrierTimeout(
                    f"barrier of group {self.group.id}: {what} within {limit_s:.0f} s (hardware.barrier_timeout_s; "
                    "a pattern's GPUs must be measured at once: max_workers / max_lanes at least the number of GPUs "
                    "in patterns)"
                )
            time.sleep(POLL_S)


class BarrierJson(TypedDict, total=False):
    """What a pattern's run records under ``group``: the members, who led, who was absent, when it was released
    (and, for the leader, who had not finished measuring); a run that never passed the barrier: id and lanes."""

    id: Required[str]
    lanes: Required[list[str]]
    size: int
    leader: str
    absent: list[str]
    arrived_at: float
    released_at: float
    waited_s: float
    stragglers: list[str]


def wait_at_barrier(
    folder_path: Path, spec: RunSpec, timeout_s: float, on_all_arrived: Callable[[], None] | None = None
) -> BarrierJson:
    """Arrive at the run's group barrier and wait for the other lanes; returns what to record.

    When every member has arrived, the pattern's first lane calls ``on_all_arrived`` (it takes the
    pattern lock) and then says go; the others start when they see that go. Arriving and waiting for
    the go each have ``timeout_s``: the leader may wait that long for the pattern lock while another
    pattern measures, so the members' wait for go starts afresh once everyone has arrived. A member
    whose run already has a successful record (an earlier attempt) will not come again: it is
    listed as absent, and this run is timed without it.
    """
    group = spec.group
    assert group is not None, "a run of a multi-GPU pattern"
    arrival = _Arrival(folder_path, spec, group)
    absent = sorted(lane for lane, run_id in arrival.others.items() if results.successful(folder_path, run_id))
    waiting = set(arrival.others) - set(absent)
    leader = min(set(group.runs) - set(absent))

    def all_arrived() -> bool:
        waiting.difference_update({lane for lane in waiting if (arrival.here / lane).exists()})
        return not waiting

    arrival.wait(f"lanes {sorted(waiting)} did not arrive", all_arrived, timeout_s)
    go = arrival.here / "go"
    if spec.lane == leader:
        if on_all_arrived is not None:
            on_all_arrived()
        results.write_json_atomic(go, {"at": time.time()})
    else:
        # a fresh limit: the leader may wait up to timeout_s for the pattern lock (it fails, and says so, first)
        arrival.wait(f"lane {leader} did not say go",
                     lambda: go.exists() and go.stat().st_mtime >= arrival.arrived_at, timeout_s + GO_GRACE_S)
    released_at = time.time()
    return BarrierJson(
        id=group.id,
        lanes=sorted(group.runs),
        size=len(group.runs),
        leader=leader,
        absent=absent,
        arrived_at=arrival.arrived_at,
        released_at=released_at,
        waited_s=released_at - arrival.arrived_at,
    )


def take_pattern_lock(timeout_s: float) -> tuple[FileLock, float]:
    """Wait (up to ``timeout_s``) until no other pattern run measures on this host; the held lock and the wait."""
    path = paths.outputs_dir() / ".locks" / "patterns.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock, t0 = FileLock(str(path)), time.monotonic()
    try:
        lock.acquire(timeout=timeout_s, poll_interval=0.01)
    except Timeout:
        raise BarrierTimeout(f"pattern lock: other pattern runs held {path} for more than {timeout_s:.0f} s") from None
    return lock, time.monotonic() - t0


def mark_done(folder_path: Path, spec: RunSpec) -> None:
    """Say this lane's pattern run has finished measuring."""
    assert spec.group is not None, "a run of a multi-GPU pattern"
    results.write_json_atomic(_barrier_dir(folder_path, spec.group.id) / f"{spec.lane}.done", {"at": time.time()})


def wait_done(folder_path: Path, spec: RunSpec, group: BarrierJson, timeout_s: float) -> list[str]:
    """The leader waits until the pattern's other lanes finished measuring; returns those that did not.

    A member is waited for until its ``.done`` mark appears, or its run's record says it failed in
    this pass of the barrier (after the leader arrived): it gave up waiting for go, or its worker
    died and its supervisor recorded the run. Either way it will write no mark, and the leader, which
    holds the pattern lock, stops waiting for it; ``timeout_s`` caps the wait in any case.
    """
    assert spec.group is not None, "a run of a multi-GPU pattern"
    here = _barrier_dir(folder_path, spec.group.id)
    runs = spec.group.runs
    since = group["arrived_at"]  # anything older is an earlier attempt's
    members = set(group["lanes"]) - {spec.lane} - set(group["absent"])
    waiting, failed = set(members), set()
    deadline = time.monotonic() + timeout_s

    def done(lane: str) -> bool:
        try:
            return (here / f"{lane}.done").stat().st_mtime >= since
        except OSError:
            return False

    def settled(lane: str) -> bool:
        if done(lane):
            return True
        if _failed_since(folder_path, runs[lane], since) is not None:
            failed.add(lane)
            return True
        return False

    while waiting and time.monotonic() < deadline:
        waiting = {lane for lane in waiting if not settled(lane)}
        if waiting:
            time.sleep(POLL_S)
    for lane in set(group["lanes"]) - waiting:  # every member is past the go (or gone): the marks can go
        (here / f"{lane}.done").unlink(missing_ok=True)
    (here / "go").unlink(missing_ok=True)
    return sorted(waiting | failed)


def leave_barrier(folder_path: Path, spec: RunSpec) -> None:
    """Take this lane's mark off its group's barrier (its run is over, or its worker died)."""
    if spec.group:
        (_barrier_dir(folder_path, spec.group.id) / spec.lane).unlink(missing_ok=True)


class PatternRun:
    """One run of a pattern study (``spec.exclusive``): the waits before its timing, the clean-up after.

    ``notify(event, **fields)`` tells the supervisor when the run starts waiting (its ``timeout_s``
    is paused) and when it starts timing.
    """

    def __init__(self, folder_path: Path, spec: RunSpec, notify: Callable[..., None]):
        self.folder_path, self.spec, self.notify = folder_path, spec, notify
        self.wait_s = float(spec.barrier_timeout_s or spec.test.timeout_s)
        self.group: BarrierJson | None = None  # what the barrier said, once passed
        self.lock: FileLock | None = None
        self.lock_wait_s: float | None = None

    def _take_lock(self) -> None:
        self.lock, self.lock_wait_s = take_pattern_lock(self.wait_s)

    def before_timing(self) -> None:
        """Hold the pattern lock (a single-GPU run) or pass the pattern's barrier (a multi-GPU one)."""
        self.notify(protocol.WAITING, run_id=self.spec.run_id, limit_s=self.wait_s)
        try:
            if self.spec.group:
                self.group = wait_at_barrier(self.folder_path, self.spec, self.wait_s, on_all_arrived=self._take_lock)
            else:
                self._take_lock()
        finally:
            self.notify(protocol.TIMING, run_id=self.spec.run_id)

    def finish(self) -> BarrierJson | None:
        """After measuring (or failing): members say done, the leader waits for them, locks and marks go.

        Returns what the record keeps under ``group`` (None for a single-GPU run).
        """
        spec = self.spec
        if self.group and self.group["leader"] != spec.lane:
            mark_done(self.folder_path, spec)
        elif self.group:  # the leader keeps the pattern lock until every member has finished measuring
            self.group["stragglers"] = wait_done(self.folder_path, spec, self.group, self.wait_s)
        if self.lock is not None:
            self.lock.release()
        if not spec.group:
            return None
        leave_barrier(self.folder_path, spec)
        return self.group or BarrierJson(id=spec.group.id, lanes=sorted(spec.group.runs))
