"""Progress events a worker prints on stdout, one JSON object per line after a fixed prefix."""

from __future__ import annotations

import json
from typing import Any

EVENT_PREFIX = "@@numa_lab "


def emit(event: str, **fields: Any) -> None:
    """Print one progress event."""
    print(EVENT_PREFIX + json.dumps({"event": event, **fields}, default=str), flush=True)


def parse_event(line: str) -> dict[str, Any] | None:
    """The event on ``line``, or None for an ordinary log line."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        event = json.loads(line[len(EVENT_PREFIX):])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None
