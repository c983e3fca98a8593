"""What a rerun needs, kept in every record under ``reproduce``: the experiment that measures exactly this run, its
placement, the versions and machine it ran with, and the code's version.

``experiment`` is a whole ``ExperimentConfig`` (plain JSON) whose plan, on a host with the same placement, is this
one run: its model alone, its test settings, its GPU and node. A multi-GPU pattern's run is measured alone by it
(``hardware.together`` off), and the placement says which pattern it was part of.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numa_ops
from numa_ops.record import ArmPlace, Environment, Reproduce, RunPlacement, RunRecord, Versions

if TYPE_CHECKING:
    from numa_ops.specs import RunSpec

REPO = Path(__file__).resolve().parents[2]
VERSION_KEYS = ("numa_lab", "torch", "cuda", "driver", "vit_pytorch", "numactl")


def experiment_of(spec: RunSpec) -> dict[str, Any]:
    """The resolved experiment config that plans exactly ``spec``'s run (its model, test, profile and placement)."""
    hardware: dict[str, Any] = {
        "gpu_ids": "all" if spec.gpu_id is None else [spec.gpu_id],
        "numa_nodes": [spec.host_pool_node], "share_gpu": spec.share_gpu, "placement": spec.placement_mode,
    }
    if spec.placement_mode == "paired":
        hardware.update(paired=spec.paired, numa_nodes=sorted({a.node for a in spec.arms}),
                        paired_arms=[{"node": a.node, "pinned": a.pinned if spec.gpu_id is not None else None}
                                     for a in spec.arms])
    return {"name": spec.experiment, "description": f"the experiment of run {spec.run_id}",
            "vit_configs": [spec.model.model_dump()], "hardware": hardware, "test": spec.test.model_dump(),
            "max_workers": 1, "profile": spec.profile.model_dump()}


def placement_of(spec: RunSpec) -> RunPlacement:
    """Where the run was measured, as its spec has it."""
    return RunPlacement(gpu_id=spec.gpu_id, cpu_node=spec.cpu_node, mem_node=spec.mem_node, placement=spec.placement,
                        numa_distance=spec.numa_distance, lane=spec.lane, placement_mode=spec.placement_mode,
                        pool_node=spec.pool_node, paired=spec.paired,
                        arms=[ArmPlace(**a.to_json()) for a in spec.arms], study=spec.study,
                        sweep_point=spec.sweep_point, repeat=spec.repeat,
                        group_id=spec.group.id if spec.group else None)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe --always --dirty`` of the repository the package runs from, else the package's version."""
    try:
        done = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--tags"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return numa_ops.__version__
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else numa_ops.__version__


def facts(spec: RunSpec, environment: Environment | None = None) -> Reproduce:
    """The record's ``reproduce`` key; ``environment`` (the worker's) gives the versions and the machine."""
    env = environment or Environment()
    versions = Versions(numa_lab=numa_ops.__version__, torch=env.torch, cuda=env.cuda_runtime, driver=env.driver,
                        vit_pytorch=env.vit_pytorch, numactl=env.numactl_version)
    return Reproduce(experiment=experiment_of(spec), placement=placement_of(spec), versions=versions,
                     gpu_model=env.gpu_name, cpu_model=env.cpu_model, code_version=code_version())


@dataclass(frozen=True)
class Reproduction:
    """A record's ``reproduce`` key, read: what a rerun plans from, and what it compares its own with."""

    experiment: dict[str, Any]
    placement: RunPlacement
    versions: dict[str, str | None]  # VERSION_KEYS -> the version (None: not known)
    gpu_model: str | None
    cpu_model: str | None
    code_version: str | None
    host: str | None = None  # the record's environment.host (not part of ``reproduce``: where it ran)

    @classmethod
    def of_record(cls, record: RunRecord) -> Reproduction:
        """The record's ``reproduce``; a record written before it existed gets one from its own fields. A record
        that cannot say how (no experiment, no model or test) raises KeyError naming what it lacks."""
        env = record.environment or Environment()
        data = record.reproduce
        if data is None or not data.model_dump():  # written before it existed (an empty one says nothing either)
            data = _from_older(record, env)
        if data.experiment is None:
            raise KeyError("experiment")
        versions = data.versions or Versions()
        return cls(experiment=dict(data.experiment), placement=data.placement or RunPlacement(),
                   versions={k: getattr(versions, k) for k in VERSION_KEYS}, gpu_model=data.gpu_model,
                   cpu_model=data.cpu_model, code_version=data.code_version, host=env.host)


def _from_older(record: RunRecord, env: Environment) -> Reproduce:
    """``reproduce`` rebuilt from an older record's model, test and placement fields (process or pool placement)."""
    gpu = record.gpu_id
    node = record.pool_node if "pool_node" in record.model_fields_set else record.mem_node
    mode = record.placement_mode or "process"
    if mode == "paired":
        raise ValueError(f"run {record.run_id} is a paired run of a record without 'reproduce': cannot rerun it")
    if record.model is None or record.test is None:
        raise KeyError("model" if record.model is None else "test")
    experiment = {"name": record.experiment or "rerun", "vit_configs": [record.model.model_dump(mode="json")],
                  "hardware": {"gpu_ids": "all" if gpu is None else [gpu], "numa_nodes": [node], "placement": mode},
                  "test": record.test.model_dump(mode="json"), "max_workers": 1}
    placement = {k: getattr(record, k) for k in ("gpu_id", "cpu_node", "mem_node", "placement", "numa_distance",
                                                  "lane", "placement_mode", "pool_node", "study", "sweep_point",
                                                  "repeat")}
    return Reproduce(experiment=experiment, placement=RunPlacement(**placement),
                     versions=Versions(torch=env.torch, cuda=env.cuda_runtime, driver=env.driver),
                     gpu_model=env.gpu_name, cpu_model=env.cpu_model, code_version=None)
