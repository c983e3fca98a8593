"""Build real lanes of the tiny experiment for tests that start real workers, and run specs by hand."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from numa_ops import pipeline
from numa_ops.config import ProfileConfig, TestConfig, VitConfig
from numa_ops.specs import Lane, RunSpec
from numa_ops.topology import discover

TINY_MODEL = VitConfig(name="tiny", patch_size=8, depth=1, heads=2, dim=32, mlp_dim=64, num_classes=10)
TINY_TEST = TestConfig(num_samples=16, batch_size=4, tensor_shape=[3, 32, 32], memory_size_mb=1)


def tiny_lane(*overrides: str) -> tuple[Path, Lane]:
    """Plan the tiny experiment on this host (CPU lane); return (folder path, lane)."""
    folder_path, lanes = pipeline.prepare("tiny", list(overrides), discover())
    assert len(lanes) == 1
    return folder_path, lanes[0]


def with_test(lane: Lane, index: int, **settings: Any) -> Lane:
    """``lane`` with run ``index``'s test settings changed, validated as the worker will parse them."""
    spec = lane.runs[index]
    runs = list(lane.runs)
    runs[index] = replace(spec, test=TestConfig.model_validate({**spec.test.model_dump(), **settings}))
    return replace(lane, runs=tuple(runs))


def with_profile(lane: Lane, index: int, **settings: Any) -> Lane:
    """``lane`` with run ``index``'s profile settings changed (as another study's run would have them)."""
    spec = lane.runs[index]
    runs = list(lane.runs)
    runs[index] = replace(spec, profile=ProfileConfig.model_validate({**spec.profile.model_dump(), **settings}))
    return replace(lane, runs=tuple(runs))


def run_spec(run_id: str = "f.s.cpu-cpu0-mem0.tiny.0", lane: str = "cpu-cpu0-mem0", gpu_id: int | None = None,
             **fields: Any) -> RunSpec:
    """A run spec written by hand: the tiny model and test settings, on CPU node 0, unless ``fields`` say otherwise."""
    base: dict[str, Any] = {
        "run_id": run_id, "folder": "f", "study": "s", "experiment": "e", "sweep_point": 0, "model": TINY_MODEL,
        "test": TINY_TEST, "profile": ProfileConfig(), "share_gpu": False, "gpu_id": gpu_id, "cpu_node": 0,
        "mem_node": 0, "placement": "cpu" if gpu_id is None else "local", "numa_distance": None, "lane": lane,
        "pool_node": 0,
    }
    return RunSpec(**(base | fields))
