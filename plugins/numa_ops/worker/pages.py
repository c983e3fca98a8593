"""Where a buffer's pages actually are: ``/proc/self/numa_maps`` for the mapping that holds it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_NODE = re.compile(r"\bN(\d+)=(\d+)\b")


def _mapping_start(address: int, maps: str) -> int | None:
    for line in maps.splitlines():
        span = line.split(" ", 1)[0]
        lo, hi = (int(x, 16) for x in span.split("-"))
        if lo <= address < hi:
            return lo
    return None


def pages_by_node(address: int, proc: Path = Path("/proc/self")) -> dict[int, int] | None:
    """Pages per NUMA node of the mapping that contains ``address`` (None if the kernel does not say)."""
    try:
        start = _mapping_start(address, (proc / "maps").read_text())
        if start is None:
            return None
        for line in (proc / "numa_maps").read_text().splitlines():
            if int(line.split(" ", 1)[0], 16) == start:
                return {int(n): int(c) for n, c in _NODE.findall(line)}
    except (OSError, ValueError):
        return None
    return None


def placement_proof(address: int, intended_node: int, proc: Path = Path("/proc/self")) -> dict[str, Any]:
    """Pages per node of the buffer's mapping and the fraction on ``intended_node``."""
    counts = pages_by_node(address, proc)
    if not counts:
        return {"source": None, "by_node": None, "intended_node": intended_node, "fraction_on_intended": None}
    total = sum(counts.values())
    return {
        "source": "numa_maps",
        "by_node": {str(k): v for k, v in sorted(counts.items())},
        "intended_node": intended_node,
        "fraction_on_intended": counts.get(intended_node, 0) / total if total else None,
    }
