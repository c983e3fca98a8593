"""Config x sweep x topology -> run specs with deterministic ids, grouped into placement lanes.

A lane is one bound worker process (a GPU, a CPU node and a memory node) that runs its runs
one after another.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
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


def _spec(
    folder: str, study: str, point: int, cfg: ExperimentConfig, model: dict[str, Any], gpu: int | None, node: int,
    topo: Topology,
) -> dict[str, Any]:
    placement, distance = placement_of(gpu, node, topo)
    return {
        "folder": folder,
        "study": study,
        "experiment": cfg.name,
        "sweep_point": point,
        "model": model,
        "test": cfg.test.model_dump(),
        "profile": cfg.profile.model_dump(),
        "hardware": {"share_gpu": cfg.hardware.share_gpu},
        "gpu_id": gpu,
        "cpu_node": node,
        "mem_node": node,
        "placement": placement,
        "numa_distance": distance,
        "lane": lane_name(gpu, node, node),
    }


_PLACE_KEYS = ("gpu_id", "cpu_node", "mem_node", "placement", "numa_distance", "lane")


def _pool(folder: str, study: str, name: str, specs: list[dict[str, Any]], k: int) -> None:
    """One run that any of ``specs``' lanes may take (``hardware.spread``): same run_id on each lane.

    The lanes' workers claim pooled runs as they reach them, so a sweep is shared out by the speed
    each GPU really has rather than by a fixed split.
    """
    identity = {key: v for key, v in specs[0].items() if key not in _PLACE_KEYS} | {"node_choice": k}
    run_id = f"{folder}.{study}.pool.{name}.{_digest(identity)}"
    lanes = [s["lane"] for s in specs]
    for spec in specs:
        spec.update(run_id=run_id, pool=lanes)


def _group(folder: str, study: str, point: int, name: str, specs: list[dict[str, Any]], k: int, seq: int) -> None:
    """Runs measured at the same time on several GPUs (``hardware.together``): a multi-GPU pattern.

    Each lane's worker waits at a common barrier before timing, so the GPUs' timed trials overlap.
    ``seq`` numbers the plan's patterns in the order they were planned.
    """
    gpus = "-".join(str(s["gpu_id"]) for s in specs)
    group = {"id": f"{study}.p{point}.{name}.n{k}.gpus{gpus}", "seq": seq,
             "runs": {s["lane"]: s["run_id"] for s in specs}}
    for spec in specs:
        spec["group"] = group


def distinct_runs(lanes: Any) -> list[dict[str, Any]]:
    """Each run of ``lanes`` once (a pooled run is offered to several lanes but runs once).

    ``lanes``: :class:`Lane` objects, lane dicts from ``plan.json``, or lists of run specs.
    """
    runs: dict[str, dict[str, Any]] = {}
    for lane in lanes:
        for spec in lane.runs if isinstance(lane, Lane) else lane["runs"] if isinstance(lane, dict) else lane:
            runs.setdefault(spec["run_id"], spec)
    return list(runs.values())


def count_runs(lanes: Any) -> int:
    """How many distinct runs ``lanes`` hold (see :func:`distinct_runs`)."""
    return len(distinct_runs(lanes))


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
    workers, patterns = 1, 0
    for study, cfg, point in ((s, c, i) for s, cs in studies.items() for i, c in enumerate(cs)):
        gpus = resolve_gpus(cfg.hardware.gpu_ids, topo)
        workers = max(workers, cfg.max_workers)
        nodes = {gpu: resolve_nodes(cfg.hardware.numa_nodes, topo, gpu) for gpu in gpus}
        for vit in cfg.vit_configs:
            for k in range(max(len(n) for n in nodes.values())):
                members = [(gpu, nodes[gpu][k]) for gpu in gpus if k < len(nodes[gpu])]
                specs = [_spec(folder, study, point, cfg, vit.model_dump(), gpu, node, topo) for gpu, node in members]
                if cfg.hardware.spread and len(specs) > 1:
                    _pool(folder, study, vit.name, specs, k)
                else:
                    for spec in specs:
                        spec["run_id"] = f"{folder}.{study}.{spec['lane']}.{vit.name}.{_digest(spec)}"
                    if cfg.hardware.together:  # measured alone among pattern runs, or as one pattern
                        for spec in specs:
                            spec.update(exclusive=True, barrier_timeout_s=cfg.hardware.barrier_timeout_s)
                        if len(specs) > 1:
                            _group(folder, study, point, vit.name, specs, k, patterns)
                            patterns += 1
                for spec in specs:
                    lanes.setdefault((spec["gpu_id"], spec["cpu_node"], spec["mem_node"]), []).append(spec)
    total = count_runs(lanes.values())
    if total == 0:
        raise PlanError("the plan has no runs")
    if total > max_runs():
        raise PlanError(f"the plan has {total} runs, over the cap of {max_runs()} (NUMA_LAB_MAX_RUNS)")
    for key, runs in lanes.items():
        ids = [r["run_id"] for r in runs]
        if len(set(ids)) != len(ids):
            raise PlanError(f"the plan repeats a run on lane {lane_name(*key)} (same model, settings and placement twice)")
    workers = max(workers, len(pattern_gpus(lanes.values())))  # every GPU of the patterns runs at once
    plan = [
        Lane(lane_name(*key), folder, key[0], key[1], key[2], workers, runs)
        for key, runs in sorted(lanes.items(), key=lambda kv: lane_name(*kv[0]))
    ]
    turns(plan)  # refuses patterns that no order of the GPUs' lanes can meet
    return plan


def pattern_gpus(lanes: Any) -> list[int]:
    """The GPUs that take part in multi-GPU patterns (see :func:`distinct_runs` for ``lanes``)."""
    return sorted({r["gpu_id"] for r in distinct_runs(lanes) if r.get("group")})


def turns(lanes: list[Lane]) -> dict[int | None, list[Lane]]:
    """Each device's lanes in the order they take it (a device measures one lane at a time).

    Without multi-GPU patterns, plan order. With patterns, the GPUs that take part come first, and each
    GPU's lanes go in the order of their first pattern, so every GPU meets its patterns in one common
    order; otherwise two GPUs could each wait at a barrier for a lane the other has yet to start. A plan
    whose patterns no such order can meet is refused with :class:`PlanError`.
    """
    by_device: dict[int | None, list[Lane]] = defaultdict(list)
    for lane in lanes:
        by_device[lane.gpu_id].append(lane)
    gpus = pattern_gpus(lanes)
    if not gpus:
        return dict(by_device)

    def first_pattern(lane: Lane) -> float:
        return min((r["group"]["seq"] for r in lane.runs if r.get("group")), default=float("inf"))

    order = {gpu: sorted(by_device[gpu], key=first_pattern) for gpu in gpus}
    order.update((device, ls) for device, ls in by_device.items() if device not in order)
    before: TopologicalSorter[str] = TopologicalSorter()
    for device_lanes in order.values():
        met = list(dict.fromkeys(r["group"]["id"] for lane in device_lanes for r in lane.runs if r.get("group")))
        for earlier, later in zip(met, met[1:], strict=False):
            before.add(later, earlier)
    try:
        before.prepare()
    except CycleError as exc:
        raise PlanError(
            f"the plan's multi-GPU patterns cannot all be met: GPUs would meet patterns {exc.args[1]} in opposite "
            "orders and wait for each other; plan them in separate runs"
        ) from None
    return order


def measure_units(lanes: list[Lane], max_concurrent: int) -> list[dict[str, Any]]:
    """What a scheduler runs as one task each: a lane, or, where the plan has multi-GPU patterns, one
    device's lanes in :func:`turns` order (``{"name", "folder", "gpu_id", "lanes"}``), pattern GPUs first.

    Patterns need every GPU that takes part running at once: more such GPUs than ``max_concurrent``
    tasks is refused with :class:`PlanError` instead of waiting at barriers until they time out.
    """
    gpus = pattern_gpus(lanes)
    if not gpus:
        return [lane.to_dict() for lane in lanes]
    if len(gpus) > max_concurrent:
        raise PlanError(
            f"the plan's multi-GPU patterns use {len(gpus)} GPUs ({gpus}), which must be measured at once, "
            f"but at most {max_concurrent} lanes run at once: raise the phase's max_lanes to {len(gpus)}"
        )
    return [
        {"name": "cpu" if device is None else f"gpu{device}", "folder": device_lanes[0].folder, "gpu_id": device,
         "lanes": [lane.to_dict() for lane in device_lanes]}
        for device, device_lanes in turns(lanes).items()
    ]
