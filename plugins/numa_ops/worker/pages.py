"""Where a buffer's pages actually are: ``/proc/self/numa_maps`` for the mappings that hold it.

A pool made by the bound worker (``hardware.placement=process``) lies in a mapping of torch's
allocator; a pool bound by itself (``placement=pool``) is an anonymous mapping of its own whose
numa_maps line says ``bind:N``. Either way the mapping that holds the buffer's first byte is
found in ``maps`` (or, with ``length``, every mapping the buffer overlaps) and its pages counted.
"""

from __future__ import annotations

import re
from pathlib import Path

from numa_ops.worker.metric_types import PoolPagesJson

_NODE = re.compile(r"\bN(\d+)=(\d+)\b")


def _spans(maps: str) -> list[tuple[int, int]]:
    spans = []
    for line in maps.splitlines():
        lo, hi = (int(x, 16) for x in line.split(" ", 1)[0].split("-"))
        spans.append((lo, hi))
    return spans


def _mapping_starts(address: int, length: int, maps: str) -> list[int]:
    """Starts of the mappings that ``[address, address + length)`` overlaps (only the first with length <= 1)."""
    end = address + max(length, 1)
    return [lo for lo, hi in _spans(maps) if lo < end and address < hi]


def _read(address: int, length: int, proc: Path) -> tuple[dict[int, int], list[str]] | None:
    """(pages per node, policies) over the buffer's mappings; None if the kernel does not say."""
    try:
        starts = set(_mapping_starts(address, length, (proc / "maps").read_text()))
        if not starts:
            return None
        counts: dict[int, int] = {}
        policies: list[str] = []
        found = False
        for line in (proc / "numa_maps").read_text().splitlines():
            fields = line.split(" ")
            if int(fields[0], 16) in starts:
                found = True
                if len(fields) > 1 and fields[1] not in policies:
                    policies.append(fields[1])
                for node, pages in _NODE.findall(line):
                    counts[int(node)] = counts.get(int(node), 0) + int(pages)
    except (OSError, ValueError):
        return None
    return (counts, policies) if found else None


def placement_proof(
    address: int, intended_node: int, proc: Path = Path("/proc/self"), length: int = 0
) -> PoolPagesJson:
    """Pages per node of the buffer's mapping(s), the fraction on ``intended_node``, and the memory policy
    numa_maps gives them (``default``, or ``bind:N`` for a pool bound with mbind).

    ``length``: count every mapping that ``[address, address + length)`` overlaps (a buffer the kernel split);
    without it, the mapping that contains ``address``."""
    read = _read(address, length, proc)
    counts, policies = read if read else ({}, [])
    if not counts:
        return {"source": None, "by_node": None, "intended_node": intended_node, "fraction_on_intended": None,
                "policy": None}
    total = sum(counts.values())
    return {
        "source": "numa_maps",
        "by_node": {str(k): v for k, v in sorted(counts.items())},
        "intended_node": intended_node,
        "fraction_on_intended": counts.get(intended_node, 0) / total if total else None,
        "policy": ",".join(policies) or None,
    }
