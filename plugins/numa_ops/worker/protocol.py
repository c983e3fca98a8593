"""Progress events a worker prints on stdout, one JSON object per line after a fixed prefix.

The event names are defined here once: the worker emits them, the lane loop
(:class:`numa_ops.supervise.LaneSupervisor`) has one handler for each.
"""

from __future__ import annotations

import json
from typing import Any, Required, TypedDict

EVENT_PREFIX = "@@numa_lab "

READY = "ready"  # the worker has imported and initialised: startup_s, pid, device
SKIP = "skip"  # a shared run (hardware.spread) another lane has taken: run_id, reason
START = "start"  # a run begins: run_id, model
WAITING = "waiting"  # a pattern's run waits for its other GPUs: run_id, limit_s
TIMING = "timing"  # the pattern's GPUs are all there: the run's timed trials begin: run_id
END = "end"  # a run's record is written: run_id, success, duration, samples_per_s, error
DONE = "done"  # the worker has measured every run it was given: failures, total_s
EVENTS = (READY, SKIP, START, WAITING, TIMING, END, DONE)


class Event(TypedDict, total=False):
    """One parsed progress event: its name and the fields that event carries (listed with the names above)."""

    event: Required[str]
    run_id: str
    startup_s: float
    pid: int
    device: str
    reason: str
    model: str
    limit_s: float
    success: bool
    duration: float
    samples_per_s: float | None
    error: str | None
    failures: int
    total_s: float


def emit(event: str, **fields: Any) -> None:
    """Print one progress event."""
    print(EVENT_PREFIX + json.dumps({"event": event, **fields}, default=str), flush=True)


def parse_event(line: str) -> Event | None:
    """The event on ``line``, or None for an ordinary log line."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        event = json.loads(line[len(EVENT_PREFIX):])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None
