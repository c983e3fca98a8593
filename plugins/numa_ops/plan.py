"""Config x sweep x topology -> run specs with deterministic ids, grouped into placement lanes.

A lane is one bound worker process (a GPU, a CPU node and a memory node; with
``hardware.placement=pool`` also the node its host pool goes on; and a repeat) that runs its runs
one after another. ``test.repeats`` makes each repeat of a placement a lane of its own, so every
configuration is measured by that many separate worker processes (the process is the unit of
comparison). A device takes its lanes repeat by repeat, the odd repeats backwards (ABBA: local then
remote, remote then local, ...), so drift over time hits every placement alike.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Any

from numa_ops import settings
from numa_ops.config import ExperimentConfig
from numa_ops.topology import PlacementError, Topology, home_node, placement_of, resolve_gpus, resolve_nodes


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
    placement_mode: str = "process"  # hardware.placement: process | pool
    pool_node: int | None = None  # where the host pool goes (pool mode; process mode: on mem_node)
    repeat: int = 0  # which of test.repeats worker processes this is

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "folder": self.folder,
            "gpu_id": self.gpu_id,
            "cpu_node": self.cpu_node,
            "mem_node": self.mem_node,
            "max_workers": self.max_workers,
            "runs": self.runs,
            "placement_mode": self.placement_mode,
            "pool_node": self.pool_node,
            "repeat": self.repeat,
        }


def lane_name(gpu_id: int | None, cpu_node: int, mem_node: int, pool_node: int | None = None, repeat: int = 0) -> str:
    """A lane's readable name, e.g. ``gpu0-cpu1-mem1``, ``cpu-cpu0-mem0``, ``gpu0-cpu0-mem0-pool1`` (host pool
    alone on node 1) or ``gpu0-cpu1-mem1-r2`` (the third worker process of that placement)."""
    device = "cpu" if gpu_id is None else f"gpu{gpu_id}"
    name = f"{device}-cpu{cpu_node}-mem{mem_node}"
    if pool_node is not None:
        name += f"-pool{pool_node}"
    return name + (f"-r{repeat}" if repeat else "")


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


def _spec(
    folder: str, study: str, point: int, cfg: ExperimentConfig, model: dict[str, Any], gpu: int | None, node: int,
    topo: Topology, repeat: int = 0,
) -> dict[str, Any]:
    """One run on ``node``: the worker bound there (process mode), or kept on the GPU's node with only its
    host pool on ``node`` (pool mode); ``placement`` and ``numa_distance`` say where the pool is."""
    placement, distance = placement_of(gpu, node, topo)
    mode = cfg.hardware.placement
    bound = home_node(gpu, topo) if mode == "pool" else node
    pool_node = node if mode == "pool" else None
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
        "cpu_node": bound,
        "mem_node": bound,
        "placement": placement,
        "numa_distance": distance,
        "lane": lane_name(gpu, bound, bound, pool_node, repeat),
        "repeat": repeat,
        "placement_mode": mode,
        "pool_node": node,
        "node_shared_with": [],
    }


_PLACE_KEYS = ("gpu_id", "cpu_node", "mem_node", "placement", "numa_distance", "lane", "pool_node")
# keys a run's identity (its run_id's digest) leaves out: the repeat is in the lane name, the neighbours
# depend on the rest of the plan, and process mode is what every run was before the pool mode existed
_NOT_IDENTITY = ("repeat", "placement_mode", "pool_node", "node_shared_with")


def _identity(spec: dict[str, Any]) -> dict[str, Any]:
    """What a run's digest covers: the spec as it was before repeats and pool placement, so a repeat 0
    in process mode keeps its run_id (and an existing folder resumes), whatever ``test.repeats`` is."""
    identity = {key: v for key, v in spec.items() if key not in _NOT_IDENTITY}
    identity["test"] = {**spec["test"], "repeats": 1}  # the number of repeats planned is not part of a run
    if spec.get("placement_mode", "process") != "process":
        identity.update(placement_mode=spec["placement_mode"], pool_node=spec["pool_node"])
    return identity


def _pool(folder: str, study: str, name: str, specs: list[dict[str, Any]], k: int) -> None:
    """One run that any of ``specs``' lanes may take (``hardware.spread``): same run_id on each lane.

    The lanes' workers claim pooled runs as they reach them, so a sweep is shared out by the speed
    each GPU really has rather than by a fixed split.
    """
    identity = {key: v for key, v in _identity(specs[0]).items() if key not in _PLACE_KEYS} | {"node_choice": k}
    repeat = specs[0]["repeat"]
    run_id = f"{folder}.{study}.pool.{name}.{_digest(identity)}" + (f".r{repeat}" if repeat else "")
    lanes = [s["lane"] for s in specs]
    for spec in specs:
        spec.update(run_id=run_id, pool=lanes)


def _group(folder: str, study: str, point: int, name: str, specs: list[dict[str, Any]], k: int, seq: int) -> None:
    """Runs measured at the same time on several GPUs (``hardware.together``): a multi-GPU pattern.

    Each lane's worker waits at a common barrier before timing, so the GPUs' timed trials overlap.
    ``seq`` numbers the plan's patterns in the order they were planned.
    """
    gpus = "-".join(str(s["gpu_id"]) for s in specs)
    repeat = specs[0]["repeat"]
    mode = "" if specs[0]["placement_mode"] == "process" else f".{specs[0]['placement_mode']}"
    group = {"id": f"{study}.p{point}.{name}.n{k}.gpus{gpus}{mode}" + (f".r{repeat}" if repeat else ""), "seq": seq,
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
    return settings.max_runs()


def build_plan(
    folder: str, configs: list[ExperimentConfig] | dict[str, list[ExperimentConfig]], topo: Topology
) -> list[Lane]:
    """Every run of every study and sweep point, placed on lanes; placement errors raise before anything runs.

    ``configs`` is one study's sweep points, or ``{study name: sweep points}``; a lane runs the runs of
    every study that uses its placement (and repeat), so a worker's start-up is paid once per lane.
    Each of ``test.repeats`` is a lane of its own (``-r1``, ``-r2`` ...; repeat 0 keeps the plain name and
    run_ids); an odd repeat's lane holds its runs backwards, as :func:`turns` runs its lanes (ABBA).
    """
    studies = configs if isinstance(configs, dict) else {"main": configs}
    lanes: dict[tuple[int | None, int, int, int | None, int], list[dict[str, Any]]] = {}
    workers, patterns = 1, 0
    for study, cfg, point in ((s, c, i) for s, cs in studies.items() for i, c in enumerate(cs)):
        gpus = resolve_gpus(cfg.hardware.gpu_ids, topo)
        workers = max(workers, cfg.max_workers)
        if cfg.hardware.placement == "pool" and topo.membind_refusal:
            raise PlacementError(
                f"experiment.hardware.placement=pool is not possible on {topo.host}: {topo.membind_refusal}; "
                "use placement=process"
            )
        nodes = {gpu: resolve_nodes(cfg.hardware.numa_nodes, topo, gpu) for gpu in gpus}
        for vit in cfg.vit_configs:
            for repeat in range(cfg.test.repeats):
                for k in range(max(len(n) for n in nodes.values())):
                    members = [(gpu, nodes[gpu][k]) for gpu in gpus if k < len(nodes[gpu])]
                    specs = [_spec(folder, study, point, cfg, vit.model_dump(), gpu, node, topo, repeat)
                             for gpu, node in members]
                    if cfg.hardware.spread and len(specs) > 1:
                        _pool(folder, study, vit.name, specs, k)
                    else:
                        for spec in specs:
                            spec["run_id"] = f"{folder}.{study}.{spec['lane']}.{vit.name}.{_digest(_identity(spec))}"
                        if cfg.hardware.together:  # measured alone among pattern runs, or as one pattern
                            for spec in specs:
                                spec.update(exclusive=True, barrier_timeout_s=cfg.hardware.barrier_timeout_s)
                            if len(specs) > 1:
                                _group(folder, study, point, vit.name, specs, k, patterns)
                                patterns += 1
                    for spec in specs:
                        pool_node = spec["pool_node"] if spec["placement_mode"] == "pool" else None
                        key = (spec["gpu_id"], spec["cpu_node"], spec["mem_node"], pool_node, repeat)
                        lanes.setdefault(key, []).append(spec)
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
        Lane(lane_name(*key), folder, key[0], key[1], key[2], workers, runs[::-1] if key[4] % 2 else runs,
             "pool" if key[3] is not None else "process", key[3], key[4])
        for key, runs in sorted(lanes.items(), key=lambda kv: lane_name(*kv[0]))
    ]
    _note_neighbours(plan)
    turns(plan)  # refuses patterns that no order of the GPUs' lanes can meet
    return plan


def _note_neighbours(plan: list[Lane]) -> None:
    """Each run's ``node_shared_with``: lanes of other devices bound to the same CPU node, which may measure
    at the same time when the phase runs more than one lane at once (see :func:`alone`)."""
    for lane in plan:
        others = sorted(o.name for o in plan if o.gpu_id != lane.gpu_id and o.cpu_node == lane.cpu_node)
        for spec in lane.runs:
            spec["node_shared_with"] = others


def alone(lane: dict[str, Any]) -> dict[str, Any]:
    """A lane dict (or a device's unit of lanes) measured with no other lane at once: nobody shares its node."""
    if "lanes" in lane:
        return {**lane, "lanes": [alone(one) for one in lane["lanes"]]}
    return {**lane, "runs": [{**spec, "node_shared_with": []} for spec in lane["runs"]]}


def pattern_gpus(lanes: Any) -> list[int]:
    """The GPUs that take part in multi-GPU patterns (see :func:`distinct_runs` for ``lanes``)."""
    return sorted({r["gpu_id"] for r in distinct_runs(lanes) if r.get("group")})


_RANK = {"local": 0, "cpu": 0, "unknown": 1, "remote": 2}


def _placement_order(lane: Lane) -> tuple[int, int, str]:
    """Local placements before remote ones, nearer before farther, then by name."""
    first = lane.runs[0] if lane.runs else {}
    return _RANK.get(first.get("placement"), 1), first.get("numa_distance") or 0, lane.name


def turns(lanes: list[Lane]) -> dict[int | None, list[Lane]]:
    """Each device's lanes in the order they take it (a device measures one lane at a time).

    Repeat by repeat (``test.repeats``): repeat 0's lanes in their order, repeat 1's in the reverse
    order, repeat 2's forwards again... (ABBA; an odd repeat's lane also holds its runs backwards, so an
    odd repeat is the exact mirror of an even one), so drift over time hits every placement alike.
    Within a repeat, without multi-GPU patterns: local placements first, then remote ones. With
    patterns, the GPUs that take part come first, and each GPU's lanes go in the order of their first
    pattern, so every GPU meets its patterns in one common order; otherwise two GPUs could each wait at a
    barrier for a lane the other has yet to start. A plan whose patterns no such order can meet is
    refused with :class:`PlanError`.
    """
    by_device: dict[int | None, list[Lane]] = defaultdict(list)
    for lane in lanes:
        by_device[lane.gpu_id].append(lane)
    gpus = pattern_gpus(lanes)

    def first_pattern(lane: Lane) -> tuple[float, tuple[int, int, str]]:
        seq = min((r["group"]["seq"] for r in lane.runs if r.get("group")), default=float("inf"))
        return seq, _placement_order(lane)

    order: dict[int | None, list[Lane]] = {}
    for device in [*gpus, *(d for d in by_device if d not in gpus)]:
        key = first_pattern if device in gpus else _placement_order
        sequence: list[Lane] = []
        for repeat in sorted({lane.repeat for lane in by_device[device]}):
            forward = sorted((lane for lane in by_device[device] if lane.repeat == repeat), key=key)
            sequence.extend(forward[::-1] if repeat % 2 else forward)
        order[device] = sequence
    if not gpus:
        return order
    before: TopologicalSorter[str] = TopologicalSorter()
    for device in gpus:
        met = list(dict.fromkeys(r["group"]["id"] for lane in order[device] for r in lane.runs if r.get("group")))
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
    """What a scheduler runs as one task each: a lane, or one device's lanes in :func:`turns` order
    (``{"name", "folder", "gpu_id", "lanes"}``, pattern GPUs first) wherever a device has several lanes
    (repeats, several placements, multi-GPU patterns): one task runs them one after another, so the
    order (ABBA, patterns) is the plan's and not the scheduler's.

    Patterns need every GPU that takes part running at once: more such GPUs than ``max_concurrent``
    tasks is refused with :class:`PlanError` instead of waiting at barriers until they time out.
    With ``max_concurrent`` 1 no two lanes measure at once, and no run's node is shared (``node_shared_with``).
    """
    gpus = pattern_gpus(lanes)
    if len(gpus) > max_concurrent:
        raise PlanError(
            f"the plan's multi-GPU patterns use {len(gpus)} GPUs ({gpus}), which must be measured at once, "
            f"but at most {max_concurrent} lanes run at once: raise the phase's max_lanes to {len(gpus)}"
        )
    order = turns(lanes)
    if not gpus and all(len(device_lanes) == 1 for device_lanes in order.values()):
        units = [lane.to_dict() for lane in lanes]
    else:
        units = [
            {"name": "cpu" if device is None else f"gpu{device}", "folder": device_lanes[0].folder, "gpu_id": device,
             "lanes": [lane.to_dict() for lane in device_lanes]}
            for device, device_lanes in order.items()
        ]
    return [alone(unit) for unit in units] if max_concurrent <= 1 else units
