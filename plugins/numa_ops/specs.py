"""The typed specs that travel between planning, the lane tasks and the worker.

A :class:`RunSpec` is one run; a :class:`Lane` is one bound worker process and its runs in order; a
:class:`DeviceTurn` is what one measure task runs: a device's lanes in the plan's order (a single lane
is a turn of one). Each has one ``to_json``/``from_json`` pair, used only where the specs cross a
boundary: ``plan.json``, the XCom between ``plan_runs`` and the lane operator, and the worker's
``--runs`` file. In between, code passes these objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NotRequired, TypedDict

from numa_ops.config import ProfileConfig, TestConfig, VitConfig


class PatternRefJson(TypedDict):
    """A :class:`PatternRef` as JSON (``group``)."""

    id: str
    seq: NotRequired[int]
    runs: dict[str, str]


class ArmJson(TypedDict):
    """An :class:`Arm` as JSON (an item of ``arms``)."""

    node: int
    pinned: bool
    placement: NotRequired[str | None]
    numa_distance: NotRequired[int | None]


class HardwareJson(TypedDict):
    share_gpu: bool


class RunSpecJson(TypedDict):
    """A :class:`RunSpec` as JSON (``plan.json``'s runs, the worker's ``--runs`` file). The keys marked
    ``NotRequired`` were added since the first plans, or are written only where they apply."""

    run_id: str
    folder: str
    study: NotRequired[str | None]
    experiment: str
    sweep_point: NotRequired[int]
    model: dict[str, Any]  # VitConfig.model_dump()
    test: dict[str, Any]  # TestConfig.model_dump()
    profile: dict[str, Any]  # ProfileConfig.model_dump()
    hardware: HardwareJson
    gpu_id: int | None
    cpu_node: int
    mem_node: int
    placement: str | None
    numa_distance: int | None
    lane: str
    repeat: NotRequired[int]
    placement_mode: NotRequired[str]
    pool_node: NotRequired[int | None]
    node_shared_with: NotRequired[list[str]]
    pool: NotRequired[list[str]]
    group: NotRequired[PatternRefJson]
    exclusive: NotRequired[bool]
    barrier_timeout_s: NotRequired[int | None]
    paired: NotRequired[str]
    arms: NotRequired[list[ArmJson]]
    rerun_of: NotRequired[str]


class LaneJson(TypedDict):
    """A :class:`Lane` as JSON (``plan.json``'s lanes)."""

    name: str
    folder: str
    gpu_id: int | None
    cpu_node: int
    mem_node: int
    max_workers: int
    runs: list[RunSpecJson]
    placement_mode: NotRequired[str]
    pool_node: NotRequired[int | None]
    repeat: NotRequired[int]
    thread_nodes: NotRequired[list[int]]


class DeviceTurnJson(TypedDict):
    """A :class:`DeviceTurn` as JSON (the XCom between ``plan_runs`` and the lane operator)."""

    name: str
    folder: str
    gpu_id: int | None
    lanes: list[LaneJson]
    host: NotRequired[str | None]
    queue: NotRequired[str | None]


class PlanLanesJson(TypedDict):
    """The part of ``plan.json`` that :func:`lanes_from_plan` reads."""

    lanes: list[LaneJson]


@dataclass(frozen=True)
class PatternRef:
    """The multi-GPU pattern a run takes part in (``hardware.together``): measured at once on every lane of it."""

    id: str
    runs: Mapping[str, str]  # lane name -> that lane's run of the pattern
    seq: int = 0  # the order in which the plan's patterns were planned

    def to_json(self) -> PatternRefJson:
        return {"id": self.id, "seq": self.seq, "runs": dict(self.runs)}

    @classmethod
    def from_json(cls, data: PatternRefJson) -> PatternRef:
        return cls(id=data["id"], runs=dict(data["runs"]), seq=data.get("seq", 0))


@dataclass(frozen=True)
class Arm:
    """One arm of a paired run: the node it puts its host memory (memory arms) or launching thread (thread
    arms) on, whether its host pool is pinned, and where that node sits from the GPU."""

    node: int
    pinned: bool
    placement: str | None = None  # local | remote | unknown | cpu
    numa_distance: int | None = None

    @property
    def name(self) -> str:
        """``node0``; ``node1-pageable`` where the arm's pool is not pinned."""
        return f"node{self.node}" + ("" if self.pinned else "-pageable")

    def to_json(self) -> ArmJson:
        return {"node": self.node, "pinned": self.pinned, "placement": self.placement,
                "numa_distance": self.numa_distance}

    @classmethod
    def from_json(cls, data: ArmJson) -> Arm:
        return cls(node=data["node"], pinned=data["pinned"], placement=data.get("placement"),
                   numa_distance=data.get("numa_distance"))


@dataclass(frozen=True)
class RunSpec:
    """One run: what to measure (model, test settings) and where (GPU, nodes, lane)."""

    run_id: str
    folder: str
    experiment: str
    model: VitConfig
    test: TestConfig
    profile: ProfileConfig
    share_gpu: bool
    gpu_id: int | None
    cpu_node: int
    mem_node: int
    placement: str | None
    numa_distance: int | None
    lane: str
    study: str | None = None  # which of the phase's studies planned it
    sweep_point: int = 0  # which of the study's sweep points it is
    repeat: int = 0  # which of test.repeats worker processes measures it
    placement_mode: str = "process"  # process: numactl binds all; pool: the host pool alone goes on pool_node
    pool_node: int | None = None  # the node the host pool goes on
    node_shared_with: tuple[str, ...] = ()  # other devices' lanes bound to the same CPU node
    pool: tuple[str, ...] = ()  # hardware.spread: the lanes that may take this run (it runs once)
    group: PatternRef | None = None  # hardware.together: the multi-GPU pattern
    exclusive: bool = False  # hardware.together: measured alone among pattern runs, or as one pattern
    barrier_timeout_s: int | None = None  # how long a pattern's run waits for its other GPUs
    paired: str | None = None  # placement_mode paired: memory | thread arms
    arms: tuple[Arm, ...] = ()  # placement_mode paired: the arms, reference first
    rerun_of: str | None = None  # a rerun: the run_id it measures again

    @property
    def host_pool_node(self) -> int:
        """The node the host pool is put on (process mode: the memory node it is bound to)."""
        return self.mem_node if self.pool_node is None else self.pool_node

    def to_json(self) -> RunSpecJson:
        data: RunSpecJson = {
            "run_id": self.run_id,
            "folder": self.folder,
            "study": self.study,
            "experiment": self.experiment,
            "sweep_point": self.sweep_point,
            "model": self.model.model_dump(),
            "test": self.test.model_dump(),
            "profile": self.profile.model_dump(),
            "hardware": {"share_gpu": self.share_gpu},
            "gpu_id": self.gpu_id,
            "cpu_node": self.cpu_node,
            "mem_node": self.mem_node,
            "placement": self.placement,
            "numa_distance": self.numa_distance,
            "lane": self.lane,
            "repeat": self.repeat,
            "placement_mode": self.placement_mode,
            "pool_node": self.pool_node,
            "node_shared_with": list(self.node_shared_with),
        }
        if self.pool:
            data["pool"] = list(self.pool)
        if self.group is not None:
            data["group"] = self.group.to_json()
        if self.exclusive:
            data.update(exclusive=True, barrier_timeout_s=self.barrier_timeout_s)
        if self.paired is not None:
            data.update(paired=self.paired, arms=[arm.to_json() for arm in self.arms])
        if self.rerun_of is not None:
            data["rerun_of"] = self.rerun_of
        return data

    @classmethod
    def from_json(cls, data: RunSpecJson) -> RunSpec:
        """A spec as :meth:`to_json` wrote it; one of an older plan, without the keys added since, gets their
        defaults (repeat 0, process placement, nobody sharing its node)."""
        later = {key: data[key] for key in ("study", "sweep_point", "repeat", "placement_mode", "pool_node",
                                            "barrier_timeout_s", "rerun_of") if key in data}
        if "node_shared_with" in data:
            later["node_shared_with"] = tuple(data["node_shared_with"])
        if data.get("pool"):
            later["pool"] = tuple(data["pool"])
        if data.get("group"):
            later["group"] = PatternRef.from_json(data["group"])
        if data.get("exclusive"):
            later["exclusive"] = True
        if data.get("paired"):
            later.update(paired=data["paired"], arms=tuple(Arm.from_json(a) for a in data["arms"]))
        return cls(
            run_id=data["run_id"],
            folder=data["folder"],
            experiment=data["experiment"],
            model=VitConfig.model_validate(data["model"]),
            test=TestConfig.model_validate(data["test"]),
            profile=ProfileConfig.model_validate(data["profile"]),
            share_gpu=data["hardware"]["share_gpu"],
            gpu_id=data["gpu_id"],
            cpu_node=data["cpu_node"],
            mem_node=data["mem_node"],
            placement=data["placement"],
            numa_distance=data["numa_distance"],
            lane=data["lane"],
            **later,
        )


def runs_to_json(runs: Iterable[RunSpec]) -> list[RunSpecJson]:
    """Run specs as the worker's ``--runs`` file holds them."""
    return [spec.to_json() for spec in runs]


def runs_from_json(data: list[RunSpecJson]) -> list[RunSpec]:
    """The worker's ``--runs`` file, parsed."""
    return [RunSpec.from_json(item) for item in data]


@dataclass(frozen=True)
class Lane:
    """One bound worker: where it runs (a GPU, a CPU node, a memory node, a repeat), and its runs in order."""

    name: str
    folder: str
    gpu_id: int | None
    cpu_node: int
    mem_node: int
    max_workers: int
    runs: tuple[RunSpec, ...]
    placement_mode: str = "process"  # hardware.placement: process | pool
    pool_node: int | None = None  # where the host pool goes (pool mode only)
    repeat: int = 0  # which of test.repeats worker processes this is
    thread_nodes: tuple[int, ...] = ()  # paired thread arms: the nodes whose CPUs the worker may use

    def alone(self) -> Lane:
        """The lane measured with no other lane at once: nobody shares its node."""
        return replace(self, runs=tuple(replace(spec, node_shared_with=()) for spec in self.runs))

    def to_json(self) -> LaneJson:
        return {
            "name": self.name,
            "folder": self.folder,
            "gpu_id": self.gpu_id,
            "cpu_node": self.cpu_node,
            "mem_node": self.mem_node,
            "max_workers": self.max_workers,
            "runs": runs_to_json(self.runs),
            "placement_mode": self.placement_mode,
            "pool_node": self.pool_node,
            "repeat": self.repeat,
            **({"thread_nodes": list(self.thread_nodes)} if self.thread_nodes else {}),
        }

    @classmethod
    def from_json(cls, data: LaneJson) -> Lane:
        """A lane as :meth:`to_json` wrote it (one of an older plan: process placement, repeat 0)."""
        later = {key: data[key] for key in ("placement_mode", "pool_node", "repeat") if key in data}
        if data.get("thread_nodes"):
            later["thread_nodes"] = tuple(data["thread_nodes"])
        return cls(
            name=data["name"],
            folder=data["folder"],
            gpu_id=data["gpu_id"],
            cpu_node=data["cpu_node"],
            mem_node=data["mem_node"],
            max_workers=data["max_workers"],
            runs=tuple(runs_from_json(data["runs"])),
            **later,
        )


@dataclass(frozen=True)
class DeviceTurn:
    """What one measure task runs: a device's lanes, one after another, in the plan's order.

    Repeats go ABBA and multi-GPU patterns in one common order (:func:`numa_ops.plan.lanes_by_device`).
    A single lane is a turn of one, named for its lane. ``host`` and ``queue``: where the plan was made
    (a lane planned on one host's topology refuses to measure on another) and the Celery queue serving it.
    """

    name: str
    folder: str
    gpu_id: int | None
    lanes: tuple[Lane, ...]
    host: str | None = None
    queue: str | None = None

    @classmethod
    def of_lane(cls, lane: Lane) -> DeviceTurn:
        return cls(lane.name, lane.folder, lane.gpu_id, (lane,))

    @property
    def planned(self) -> int:
        """How many runs its lanes hold."""
        return sum(len(lane.runs) for lane in self.lanes)

    def alone(self) -> DeviceTurn:
        """The turn measured with no other device's lanes at once: nobody shares a node."""
        return replace(self, lanes=tuple(lane.alone() for lane in self.lanes))

    def to_json(self) -> DeviceTurnJson:
        data: DeviceTurnJson = {"name": self.name, "folder": self.folder, "gpu_id": self.gpu_id,
                                "lanes": [lane.to_json() for lane in self.lanes]}
        if self.host is not None or self.queue is not None:
            data.update(host=self.host, queue=self.queue)
        return data

    @classmethod
    def from_json(cls, data: DeviceTurnJson) -> DeviceTurn:
        return cls(
            name=data["name"],
            folder=data["folder"],
            gpu_id=data["gpu_id"],
            lanes=tuple(Lane.from_json(lane) for lane in data["lanes"]),
            host=data.get("host"),
            queue=data.get("queue"),
        )


def distinct_runs(lanes: Iterable[Lane]) -> list[RunSpec]:
    """Each run of ``lanes`` once (a pooled run is offered to several lanes but runs once)."""
    runs: dict[str, RunSpec] = {}
    for lane in lanes:
        for spec in lane.runs:
            runs.setdefault(spec.run_id, spec)
    return list(runs.values())


def lanes_from_plan(plan: PlanLanesJson) -> list[Lane]:
    """The lanes of a parsed ``plan.json``."""
    return [Lane.from_json(lane) for lane in plan["lanes"]]


__all__ = ["Arm", "ArmJson", "DeviceTurn", "DeviceTurnJson", "Lane", "LaneJson", "PatternRef", "PatternRefJson",
           "PlanLanesJson", "RunSpec", "RunSpecJson", "distinct_runs", "lanes_from_plan", "runs_from_json",
           "runs_to_json"]
