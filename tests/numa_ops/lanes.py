"""Build real lanes of the tiny experiment for tests that start real workers."""

from __future__ import annotations

from typing import Any

from numa_ops import pipeline
from numa_ops.topology import discover


def tiny_lane(*overrides: str) -> tuple[Any, dict[str, Any]]:
    """Plan the tiny experiment on this host (CPU lane); return (folder path, lane dict)."""
    folder_path, lanes = pipeline.prepare("tiny", list(overrides), discover())
    assert len(lanes) == 1
    return folder_path, lanes[0].to_dict()
