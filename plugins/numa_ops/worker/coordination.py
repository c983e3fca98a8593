"""How the workers of several lanes coordinate through their run folder.

- **Claims** (``hardware.spread``): a pooled run is offered to every GPU's lane; the first worker to
  reach it takes an exclusive ``flock`` on ``claims/<run_id>.lock`` for as long as it measures. The
  kernel drops the lock if the worker dies, so a crash never leaves a run claimed forever.
- **Barriers** (``hardware.together``): the lanes of a multi-GPU pattern each write
  ``barriers/<group>/<lane>`` when their run is warmed up and ready to time, and start timing once
  every member has arrived, so the GPUs' timed trials overlap.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO, Any

from numa_ops import paths, results

POLL_S = 0.001


class BarrierTimeout(RuntimeError):
    """Some lanes of a multi-GPU pattern never reached the barrier."""


class Claim:
    """An exclusive hold on a pooled run while this process measures it (released on close or death)."""

    def __init__(self, handle: IO[str]):
        self._handle = handle

    def release(self) -> None:
        """Let go of the run (its record is written by now)."""
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def claim(folder_path: Path, spec: dict[str, Any], since: float) -> Claim | str:
    """Take a pooled run, or say why another lane has it.

    ``since``: when this lane's supervisor started; a failed record newer than that means another
    lane already tried the run in this attempt (an older failure is tried again, as on a retry).
    """
    run_id = spec["run_id"]
    path = paths.inside(folder_path, "claims", paths.safe_name(run_id, "run_id") + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return "being measured by another lane"
    try:
        record = results.read_record(results.record_path(folder_path, run_id))
    except ValueError:
        record = None
    if record is not None:
        where = record.get("lane")
        mtime = results.record_path(folder_path, run_id).stat().st_mtime
        if record.get("success"):
            verdict = f"already measured on {where}"
        elif mtime >= since:
            verdict = f"already failed on {where} in this attempt: {record.get('error')}"
        else:
            verdict = ""
        if verdict:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
            return verdict
    handle.seek(0)
    handle.truncate()
    handle.write(f"{spec['lane']} pid {os.getpid()} {results.now()}\n")
    handle.flush()
    return Claim(handle)


def _barrier_dir(folder_path: Path, group_id: str) -> Path:
    return paths.inside(folder_path, "barriers", paths.safe_name(group_id, "group"))


def wait_at_barrier(folder_path: Path, spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Arrive at the run's group barrier and wait for the other lanes; returns what to record.

    A member whose run already has a successful record (measured in an earlier attempt) will not
    come again: it is listed as absent, and this run is timed without it.
    """
    group = spec["group"]
    here = _barrier_dir(folder_path, group["id"])
    here.mkdir(parents=True, exist_ok=True)
    arrived_at = time.time()
    results.write_json_atomic(here / spec["lane"], {"pid": os.getpid(), "arrived_at": arrived_at})
    deadline = time.monotonic() + timeout_s
    others = {lane: run_id for lane, run_id in group["runs"].items() if lane != spec["lane"]}
    absent = sorted(lane for lane, run_id in others.items() if results.successful(folder_path, run_id))
    waiting = set(others) - set(absent)
    while waiting:
        waiting = {lane for lane in waiting if not (here / lane).exists()}
        if not waiting:
            break
        if time.monotonic() > deadline:
            leave_barrier(folder_path, spec)
            raise BarrierTimeout(
                f"barrier: lanes {sorted(waiting)} of group {group['id']} did not arrive within {timeout_s:.0f} s "
                "(a pattern's GPUs must be measured at once: max_workers / max_lanes at least the group's size)"
            )
        time.sleep(POLL_S)
    released_at = time.time()
    return {
        "id": group["id"],
        "lanes": sorted(group["runs"]),
        "size": len(group["runs"]),
        "absent": absent,
        "arrived_at": arrived_at,
        "released_at": released_at,
        "waited_s": released_at - arrived_at,
    }


def leave_barrier(folder_path: Path, spec: dict[str, Any]) -> None:
    """Take this lane's mark off its group's barrier (its run is over, or its worker died)."""
    if spec.get("group"):
        (_barrier_dir(folder_path, spec["group"]["id"]) / spec["lane"]).unlink(missing_ok=True)
