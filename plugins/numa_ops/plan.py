"""Config x sweep x topology -> run specs with deterministic ids, grouped into placement lanes.

A lane is one bound worker process (a GPU, a CPU node and a memory node) that runs its runs
one after another.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from numa_ops.config import ExperimentConfig
from numa_ops.topology import Topology, placement_of, resolve_gpus, resolve_nodes

DEFAULT_MAX_RUNS = 5000


class PlanError(ValueError):
    """A plan that must not start (too many runs, nothing to run)."""


@dataclass(frozen=True)
class Lane:
    """One bound worker: where it runs, and the runs it does in order."""

    name: str
    folder: str
    gpu_id: int | None
    cpu_node: int
    mem_node: int
    max_workers: int
    runs: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "folder": self.folder,
            "gpu_id": self.gpu_id,
            "cpu_node": self.cpu_node,
            "mem_node": self.mem_node,
            "max_workers": self.max_workers,
            "runs": self.runs,
        }


def lane_name(gpu_id: int | None, cpu_node: int, mem_node: int) -> str:
    """A lane's readable name, e.g. ``gpu0-cpu1-mem1`` or ``cpu-cpu0-mem0``."""
    device = "cpu" if gpu_id is None else f"gpu{gpu_id}"
    return f"{device}-cpu{cpu_node}-mem{mem_node}"


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


def max_runs() -> int:
    """The largest plan allowed to start (``NUMA_LAB_MAX_RUNS``)."""
    return int(os.environ.get("NUMA_LAB_MAX_RUNS", DEFAULT_MAX_RUNS))


def build_plan(
    folder: str, configs: list[ExperimentConfig] | dict[str, list[ExperimentConfig]], topo: Topology
) -> list[Lane]:
    """Every run of every study and sweep point, placed on lanes; placement errors raise before anything runs.

    ``configs`` is one study's sweep points, or ``{study name: sweep points}``; a lane runs the runs of
    every study that uses its placement, so a worker's start-up is paid once per lane.
    """
    studies = configs if isinstance(configs, dict) else {"main": configs}
    lanes: dict[tuple[int | None, int, int], list[dict[str, Any]]] = {}
    workers = 1
    spread_next = 0
    for study, cfg, point in ((s, c, i) for s, cs in studies.items() for i, c in enumerate(cs)):
        gpus = resolve_gpus(cfg.hardware.gpu_ids, topo)
        workers = max(workers, cfg.max_workers)
        placed = []
        if cfg.hardware.spread:  # each run on one GPU, round-robin: a sweep shared out over the GPUs
            for vit in cfg.vit_configs:
                gpu = gpus[spread_next % len(gpus)]
                spread_next += 1
                placed += [(gpu, node, vit) for node in resolve_nodes(cfg.hardware.numa_nodes, topo, gpu)]
        else:  # every run on every GPU: a placement study
            placed = [
                (gpu, node, vit)
                for gpu in gpus
                for node in resolve_nodes(cfg.hardware.numa_nodes, topo, gpu)
                for vit in cfg.vit_configs
            ]
        for gpu, node, vit in placed:
            key = (gpu, node, node)
            spec = {
                "folder": folder,
                "study": study,
                "experiment": cfg.name,
                "sweep_point": point,
                "model": vit.model_dump(),
                "test": cfg.test.model_dump(),
                "profile": cfg.profile.model_dump(),
                "hardware": {"share_gpu": cfg.hardware.share_gpu},
                "gpu_id": gpu,
                "cpu_node": node,
                "mem_node": node,
                "placement": placement_of(gpu, node, topo)[0],
                "numa_distance": placement_of(gpu, node, topo)[1],
                "lane": lane_name(*key),
            }
            spec["run_id"] = f"{folder}.{study}.{spec['lane']}.{vit.name}.{_digest(spec)}"
            lanes.setdefault(key, []).append(spec)
    total = sum(len(r) for r in lanes.values())
    if total == 0:
        raise PlanError("the plan has no runs")
    if total > max_runs():
        raise PlanError(f"the plan has {total} runs, over the cap of {max_runs()} (NUMA_LAB_MAX_RUNS)")
    ids = [r["run_id"] for runs in lanes.values() for r in runs]
    if len(set(ids)) != len(ids):
        raise PlanError("the plan repeats a run (same model, settings and placement twice)")
    return [
        Lane(lane_name(*key), folder, key[0], key[1], key[2], workers, runs)
        for key, runs in sorted(lanes.items(), key=lambda kv: lane_name(*kv[0]))
    ]
