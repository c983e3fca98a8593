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
from collections.abc import Callable, Iterable
from dataclasses import replace
from graphlib import CycleError, TopologicalSorter
from typing import Any

from numa_ops import settings
from numa_ops.config import ArmConfig, ExperimentConfig, VitConfig
from numa_ops.specs import Arm, DeviceTurn, Lane, PatternRef, RunSpec, distinct_runs
from numa_ops.topology import PlacementError, Topology, home_node, placement_of, resolve_gpus, resolve_nodes


class PlanError(ValueError):
    """A plan that must not start (too many runs, nothing to run)."""


def lane_name(
    gpu_id: int | None, cpu_node: int, mem_node: int, pool_node: int | None = None, repeat: int = 0,
    paired: str | None = None,
) -> str:
    """A lane's readable name, e.g. ``gpu0-cpu1-mem1``, ``cpu-cpu0-mem0``, ``gpu0-cpu0-mem0-pool1`` (host pool
    alone on node 1), ``gpu0-cpu1-mem1-r2`` (the third worker process of that placement) or
    ``gpu0-cpu0-mem0-paired-memory`` (paired arms measured in one worker)."""
    device = "cpu" if gpu_id is None else f"gpu{gpu_id}"
    name = f"{device}-cpu{cpu_node}-mem{mem_node}"
    if pool_node is not None:
        name += f"-pool{pool_node}"
    if paired is not None:
        name += f"-paired-{paired}"
    return name + (f"-r{repeat}" if repeat else "")


def paired_arms(cfg: ExperimentConfig, gpu: int | None, topo: Topology) -> tuple[Arm, ...]:
    """The arms of a paired run on ``gpu``, reference first: ``hardware.paired_arms``, or the GPU's own node then
    the other nodes of ``numa_nodes``. A node the host lacks is refused; so is a host with no second node when
    the arms are left to the topology (an A/A check names them: ``paired_arms=[0, 0]``)."""
    hw, home = cfg.hardware, home_node(gpu, topo)
    arms = hw.arms()
    if arms is None:
        others = [n for n in resolve_nodes(hw.numa_nodes, topo, gpu) if n != home]
        if not others:
            raise PlacementError(
                f"experiment.hardware.placement=paired: {topo.host} has no NUMA node besides node {home} (the "
                f"{'GPU' if gpu is not None else 'CPU'}'s own) among numa_nodes={hw.numa_nodes}, so there is no remote "
                f"arm to compare with; for an A/A check of the method set "
                f"experiment.hardware.paired_arms=[{home},{home}]"
            )
        arms = [ArmConfig(node=n) for n in (home, *others)]
    resolve_nodes(sorted({a.node for a in arms}), topo, gpu)  # refuses a node the host lacks
    pinned = [(cfg.test.pinned_memory if a.pinned is None else a.pinned) and gpu is not None for a in arms]
    return tuple(Arm(a.node, p, *placement_of(gpu, a.node, topo)) for a, p in zip(arms, pinned, strict=True))


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


def _spec(
    folder: str, study: str, point: int, cfg: ExperimentConfig, model: VitConfig, gpu: int | None, node: int,
    topo: Topology, repeat: int = 0,
) -> RunSpec:
    """One run on ``node`` (its run_id still to come): the worker bound there (process mode), or kept on the
    GPU's node with only its host pool on ``node`` (pool mode); ``placement`` and ``numa_distance`` say where
    the pool is."""
    placement, distance = placement_of(gpu, node, topo)
    mode = cfg.hardware.placement
    if mode == "paired":
        return _paired_spec(folder, study, point, cfg, model, gpu, topo, repeat)
    bound = home_node(gpu, topo) if mode == "pool" else node
    return RunSpec(
        run_id="", folder=folder, study=study, experiment=cfg.name, sweep_point=point, model=model, test=cfg.test,
        profile=cfg.profile, share_gpu=cfg.hardware.share_gpu, gpu_id=gpu, cpu_node=bound, mem_node=bound,
        placement=placement, numa_distance=distance,
        lane=lane_name(gpu, bound, bound, node if mode == "pool" else None, repeat), repeat=repeat,
        placement_mode=mode, pool_node=node,
    )


def _paired_spec(
    folder: str, study: str, point: int, cfg: ExperimentConfig, model: VitConfig, gpu: int | None, topo: Topology,
    repeat: int,
) -> RunSpec:
    """One paired run: the worker bound to the GPU's own node, its arms measured inside it; ``placement`` and
    ``numa_distance`` describe the compared arm (the second)."""
    arms, home, kind = paired_arms(cfg, gpu, topo), home_node(gpu, topo), cfg.hardware.paired
    if kind == "process":  # the worker is the first arm's process; a partner process takes each other arm
        home = arms[0].node
    return RunSpec(
        run_id="", folder=folder, study=study, experiment=cfg.name, sweep_point=point, model=model, test=cfg.test,
        profile=cfg.profile, share_gpu=cfg.hardware.share_gpu, gpu_id=gpu, cpu_node=home, mem_node=home,
        placement=arms[1].placement, numa_distance=arms[1].numa_distance,
        lane=lane_name(gpu, home, home, None, repeat, kind), repeat=repeat, placement_mode="paired",
        pool_node=arms[1].node, paired=kind, arms=arms,
    )


_PLACE_KEYS = ("gpu_id", "cpu_node", "mem_node", "placement", "numa_distance", "lane", "pool_node")
# keys a run's identity (its run_id's digest) leaves out: the run_id itself and what is set after it, the repeat
# (it is in the lane name), the neighbours (they depend on the rest of the plan), and the placement mode
# (process mode is what every run was before the pool mode existed)
_NOT_IDENTITY = ("run_id", "pool", "group", "exclusive", "barrier_timeout_s",
                 "repeat", "placement_mode", "pool_node", "node_shared_with", "rerun_of")


def _identity(spec: RunSpec) -> dict[str, Any]:
    """What a run's digest covers: the spec as it was before repeats and pool placement, so a repeat 0
    in process mode keeps its run_id (and an existing folder resumes), whatever ``test.repeats`` is."""
    data = spec.to_json()
    identity = {key: v for key, v in data.items() if key not in _NOT_IDENTITY}
    identity["test"] = {**data["test"], "repeats": 1}  # the number of repeats planned is not part of a run
    if spec.placement_mode != "process":
        identity.update(placement_mode=spec.placement_mode, pool_node=spec.pool_node)
    return identity


def _own_runs(folder: str, study: str, model: str, specs: list[RunSpec]) -> list[RunSpec]:
    """Each spec a run of its own lane, with its own run_id."""
    return [replace(s, run_id=f"{folder}.{study}.{s.lane}.{model}.{_digest(_identity(s))}") for s in specs]


def _shared_run(folder: str, study: str, model: str, specs: list[RunSpec], k: int) -> list[RunSpec]:
    """One run that any of ``specs``' lanes may take (``hardware.spread``): same run_id on each lane.

    The lanes' workers claim shared runs as they reach them, so a sweep is shared out by the speed
    each GPU really has rather than by a fixed split.
    """
    identity = {key: v for key, v in _identity(specs[0]).items() if key not in _PLACE_KEYS} | {"node_choice": k}
    repeat = specs[0].repeat
    run_id = f"{folder}.{study}.pool.{model}.{_digest(identity)}" + (f".r{repeat}" if repeat else "")
    lanes = tuple(s.lane for s in specs)
    return [replace(s, run_id=run_id, pool=lanes) for s in specs]


def _pattern(study: str, point: int, model: str, specs: list[RunSpec], k: int, seq: int) -> list[RunSpec]:
    """Runs measured at the same time on several GPUs (``hardware.together``): a multi-GPU pattern.

    Each lane's worker waits at a common barrier before timing, so the GPUs' timed trials overlap.
    ``seq`` numbers the plan's patterns in the order they were planned.
    """
    gpus = "-".join(str(s.gpu_id) for s in specs)
    repeat, mode = specs[0].repeat, specs[0].placement_mode
    pattern_id = (f"{study}.p{point}.{model}.n{k}.gpus{gpus}" + ("" if mode == "process" else f".{mode}")
                  + (f".r{repeat}" if repeat else ""))
    ref = PatternRef(id=pattern_id, runs={s.lane: s.run_id for s in specs}, seq=seq)
    return [replace(s, group=ref) for s in specs]


def count_runs(lanes: Iterable[Lane]) -> int:
    """How many distinct runs ``lanes`` hold (see :func:`numa_ops.specs.distinct_runs`)."""
    return len(distinct_runs(lanes))


def max_runs() -> int:
    """The largest plan allowed to start (``NUMA_LAB_MAX_RUNS``)."""
    return settings.max_runs()


# gpu, cpu node, memory node, pool node (pool mode), repeat, paired kind (paired mode)
LaneKey = tuple[int | None, int, int, int | None, int, str | None]


def _lane_key(spec: RunSpec) -> LaneKey:
    pool_node = spec.pool_node if spec.placement_mode == "pool" else None
    return spec.gpu_id, spec.cpu_node, spec.mem_node, pool_node, spec.repeat, spec.paired


def _check_pool_placement(cfg: ExperimentConfig, topo: Topology) -> None:
    hw = cfg.hardware
    if (hw.placement == "pool" or (hw.placement == "paired" and hw.paired == "memory")) and topo.membind_refusal:
        what = "pool" if hw.placement == "pool" else "paired (memory arms)"
        raise PlacementError(
            f"experiment.hardware.placement={what} is not possible on {topo.host}: {topo.membind_refusal}; "
            "use placement=process"
        )


class _Planner:
    """Places one plan's runs on lanes, numbering its multi-GPU patterns as they come."""

    def __init__(self, folder: str, topo: Topology, run_seconds: Callable[[RunSpec], float] | None = None):
        self.folder, self.topo, self.run_seconds = folder, topo, run_seconds
        self.runs_by_lane: dict[LaneKey, list[RunSpec]] = {}
        self.workers, self.patterns = 1, 0

    def add_sweep_point(self, study: str, point: int, cfg: ExperimentConfig) -> None:
        """Every model x repeat x node choice of one sweep point of one study."""
        gpus = resolve_gpus(cfg.hardware.gpu_ids, self.topo)
        self.workers = max(self.workers, cfg.max_workers)
        _check_pool_placement(cfg, self.topo)
        nodes = {gpu: resolve_nodes(cfg.hardware.numa_nodes, self.topo, gpu) for gpu in gpus}
        for vit in cfg.vit_configs:
            for repeat in range(cfg.test.repeats):
                for k in range(1 if cfg.hardware.placement == "paired" else max(len(n) for n in nodes.values())):
                    members = [(gpu, nodes[gpu][k]) for gpu in gpus if k < len(nodes[gpu])]
                    specs = [_spec(self.folder, study, point, cfg, vit, gpu, node, self.topo, repeat)
                             for gpu, node in members]
                    for spec in self._identify(study, point, cfg, vit.name, specs, k):
                        self.runs_by_lane.setdefault(_lane_key(spec), []).append(spec)

    def _identify(
        self, study: str, point: int, cfg: ExperimentConfig, model: str, specs: list[RunSpec], k: int
    ) -> list[RunSpec]:
        """The run_ids of one node choice's runs on every GPU: shared (spread), a pattern (together) or each its own."""
        if cfg.hardware.spread and len(specs) > 1:
            return _shared_run(self.folder, study, model, specs, k)
        specs = _own_runs(self.folder, study, model, specs)
        if not cfg.hardware.together:
            return specs
        specs = [replace(s, exclusive=True, barrier_timeout_s=cfg.hardware.barrier_timeout_s) for s in specs]
        if len(specs) > 1:
            specs = _pattern(study, point, model, specs, k, self.patterns)
            self.patterns += 1
        return specs

    def check(self) -> None:
        """Refuse an empty plan, one over the cap, or one that measures a run twice on a lane."""
        total = len({s.run_id for runs in self.runs_by_lane.values() for s in runs})
        if total == 0:
            raise PlanError("the plan has no runs")
        if total > max_runs():
            raise PlanError(f"the plan has {total} runs, over the cap of {max_runs()} (NUMA_LAB_MAX_RUNS)")
        for key, runs in self.runs_by_lane.items():
            ids = [r.run_id for r in runs]
            if len(set(ids)) != len(ids):
                raise PlanError(
                    f"the plan repeats a run on lane {lane_name(*key)} (same model, settings and placement twice)"
                )

    def lanes(self) -> list[Lane]:
        """The lanes, by name; an odd repeat's lane holds its runs backwards (ABBA); every run names its
        node's other devices' lanes (``node_shared_with``, see :meth:`Lane.alone`)."""
        pattern_gpus_ = {s.gpu_id for runs in self.runs_by_lane.values() for s in runs if s.group}
        workers = max(self.workers, len(pattern_gpus_))  # every GPU of the patterns runs at once
        names = {key: lane_name(*key) for key in self.runs_by_lane}
        plan = []
        for key, runs in sorted(self.runs_by_lane.items(), key=lambda kv: names[kv[0]]):
            gpu, cpu, mem, pool_node, repeat, paired = key
            neighbours = tuple(sorted(names[o] for o in self.runs_by_lane if o[0] != gpu and o[1] == cpu))
            ordered = self._longest_shared_first(runs[::-1] if repeat % 2 else runs)
            mode = "paired" if paired else "pool" if pool_node is not None else "process"
            threads = tuple(sorted({a.node for s in runs for a in s.arms})) if paired == "thread" else ()
            plan.append(Lane(names[key], self.folder, gpu, cpu, mem, workers,
                             tuple(replace(s, node_shared_with=neighbours) for s in ordered),
                             mode, pool_node, repeat, threads))
        return plan


    def _longest_shared_first(self, runs: list[RunSpec]) -> list[RunSpec]:
        """Shared-out runs (``hardware.spread``) longest first, in the places the lane's shared runs hold (its other
        runs stay where they are): every lane walks them in the same order and claims what it reaches, so the
        GPUs take the long runs first and end together. Without ``run_seconds``, the plan's order."""
        if self.run_seconds is None:
            return runs
        slots = [i for i, s in enumerate(runs) if s.pool]
        longest = sorted((runs[i] for i in slots), key=lambda s: -self.run_seconds(s))  # type: ignore[misc]
        ordered = list(runs)
        for i, spec in zip(slots, longest, strict=True):
            ordered[i] = spec
        return ordered


def build_plan(
    folder: str, configs: list[ExperimentConfig] | dict[str, list[ExperimentConfig]], topo: Topology,
    run_seconds: Callable[[RunSpec], float] | None = None,
) -> list[Lane]:
    """Every run of every study and sweep point, placed on lanes; placement errors raise before anything runs.

    ``configs`` is one study's sweep points, or ``{study name: sweep points}``; a lane runs the runs of
    every study that uses its placement (and repeat), so a worker's start-up is paid once per lane.
    Each of ``test.repeats`` is a lane of its own (``-r1``, ``-r2`` ...; repeat 0 keeps the plain name and
    run_ids); an odd repeat's lane holds its runs backwards, as :func:`lanes_by_device` orders its lanes (ABBA).
    ``run_seconds`` (a run's expected duration): shared-out runs go longest first.
    """
    studies = configs if isinstance(configs, dict) else {"main": configs}
    planner = _Planner(folder, topo, run_seconds)
    for study, sweep_points in studies.items():
        for point, cfg in enumerate(sweep_points):
            planner.add_sweep_point(study, point, cfg)
    planner.check()
    plan = planner.lanes()
    lanes_by_device(plan)  # refuses patterns that no order of the GPUs' lanes can meet
    return plan


def as_rerun(lanes: list[Lane], run_id: str) -> list[Lane]:
    """The lanes with every run marked as a rerun of ``run_id`` (its records name it)."""
    return [replace(lane, runs=tuple(replace(spec, rerun_of=run_id) for spec in lane.runs)) for lane in lanes]


def pattern_gpus(lanes: Iterable[Lane]) -> list[int]:
    """The GPUs that take part in multi-GPU patterns."""
    return sorted({r.gpu_id for r in distinct_runs(lanes) if r.group and r.gpu_id is not None})


_RANK = {"local": 0, "cpu": 0, "unknown": 1, "remote": 2}


def _placement_order(lane: Lane) -> tuple[int, int, str]:
    """Local placements before remote ones, nearer before farther, then by name."""
    if not lane.runs:
        return 1, 0, lane.name
    first = lane.runs[0]
    return _RANK.get(first.placement or "", 1), first.numa_distance or 0, lane.name


def _first_pattern(lane: Lane) -> tuple[float, tuple[int, int, str]]:
    """The lane's first multi-GPU pattern in plan order, then its placement order."""
    seq = min((r.group.seq for r in lane.runs if r.group), default=float("inf"))
    return seq, _placement_order(lane)


def _abba(lanes: list[Lane], key: Any) -> list[Lane]:
    """Repeat by repeat: repeat 0's lanes in ``key`` order, repeat 1's reversed, repeat 2's forwards again..."""
    sequence: list[Lane] = []
    for repeat in sorted({lane.repeat for lane in lanes}):
        forward = sorted((lane for lane in lanes if lane.repeat == repeat), key=key)
        sequence.extend(forward[::-1] if repeat % 2 else forward)
    return sequence


def _check_pattern_order(order: dict[int | None, list[Lane]], gpus: list[int]) -> None:
    """Refuse a plan in which two GPUs would meet their common patterns in opposite orders."""
    before: TopologicalSorter[str] = TopologicalSorter()
    for device in gpus:
        met = list(dict.fromkeys(r.group.id for lane in order[device] for r in lane.runs if r.group))
        for earlier, later in zip(met, met[1:], strict=False):
            before.add(later, earlier)
    try:
        before.prepare()
    except CycleError as exc:
        raise PlanError(
            f"the plan's multi-GPU patterns cannot all be met: GPUs would meet patterns {exc.args[1]} in opposite "
            "orders and wait for each other; plan them in separate runs"
        ) from None


def lanes_by_device(lanes: list[Lane]) -> dict[int | None, list[Lane]]:
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
    on_device: dict[int | None, list[Lane]] = defaultdict(list)
    for lane in lanes:
        on_device[lane.gpu_id].append(lane)
    gpus = pattern_gpus(lanes)
    order: dict[int | None, list[Lane]] = {}
    for device in [*gpus, *(d for d in on_device if d not in gpus)]:
        order[device] = _abba(on_device[device], _first_pattern if device in gpus else _placement_order)
    if gpus:
        _check_pattern_order(order, gpus)
    return order


def device_turns(lanes: list[Lane], max_concurrent: int) -> list[DeviceTurn]:
    """What a scheduler runs as one task each: a device's lanes in :func:`lanes_by_device` order (pattern GPUs
    first), so the order (ABBA, patterns) is the plan's and not the scheduler's. Where every device has one
    lane and there are no patterns, each lane is a turn of its own (named for the lane).

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
    order = lanes_by_device(lanes)
    if not gpus and all(len(device_lanes) == 1 for device_lanes in order.values()):
        turns = [DeviceTurn.of_lane(lane) for lane in lanes]
    else:
        turns = [DeviceTurn("cpu" if device is None else f"gpu{device}", device_lanes[0].folder, device,
                            tuple(device_lanes))
                 for device, device_lanes in order.items()]
    return [turn.alone() for turn in turns] if max_concurrent <= 1 else turns
