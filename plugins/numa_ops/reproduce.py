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


def placement_of(spec: RunSpec) -> dict[str, Any]:
    """Where the run was measured, as its spec has it."""
    return {"gpu_id": spec.gpu_id, "cpu_node": spec.cpu_node, "mem_node": spec.mem_node, "placement": spec.placement,
            "numa_distance": spec.numa_distance, "lane": spec.lane, "placement_mode": spec.placement_mode,
            "pool_node": spec.pool_node, "paired": spec.paired, "arms": [a.to_json() for a in spec.arms],
            "study": spec.study, "sweep_point": spec.sweep_point, "repeat": spec.repeat,
            "group_id": spec.group.id if spec.group else None}


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe --always --dirty`` of the repository the package runs from, else the package's version."""
    try:
        done = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--tags"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return numa_ops.__version__
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else numa_ops.__version__


def facts(spec: RunSpec, environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record's ``reproduce`` key; ``environment`` (the worker's) gives the versions and the machine."""
    env = environment or {}
    versions = {"numa_lab": numa_ops.__version__, "torch": env.get("torch"), "cuda": env.get("cuda_runtime"),
                "driver": env.get("driver"), "vit_pytorch": env.get("vit_pytorch"), "numactl": env.get("numactl_version")}
    return {"experiment": experiment_of(spec), "placement": placement_of(spec), "versions": versions,
            "gpu_model": env.get("gpu_name"), "cpu_model": env.get("cpu_model"), "code_version": code_version()}


@dataclass(frozen=True)
class Reproduction:
    """A record's ``reproduce`` key, parsed: what a rerun plans from, and what it compares its own with."""

    experiment: dict[str, Any]
    placement: dict[str, Any]
    versions: dict[str, Any]
    gpu_model: str | None
    cpu_model: str | None
    code_version: str | None
    host: str | None = None  # the record's environment.host (not part of ``reproduce``: where it ran)

    @classmethod
    def of_record(cls, record: dict[str, Any]) -> Reproduction:
        """The record's ``reproduce``; a record written before it existed gets one from its own fields."""
        env = record.get("environment") or {}
        data = record.get("reproduce") or _from_older(record, env)
        versions = data.get("versions") or {}
        return cls(experiment=dict(data["experiment"]), placement=dict(data.get("placement") or {}),
                   versions={k: versions.get(k) for k in VERSION_KEYS}, gpu_model=data.get("gpu_model"),
                   cpu_model=data.get("cpu_model"), code_version=data.get("code_version"), host=env.get("host"))


def _from_older(record: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """``reproduce`` rebuilt from an older record's model, test and placement fields (process or pool placement)."""
    gpu, node = record.get("gpu_id"), record.get("pool_node", record.get("mem_node"))
    mode = record.get("placement_mode") or "process"
    if mode == "paired":
        raise ValueError(f"run {record.get('run_id')} is a paired run of a record without 'reproduce': cannot rerun it")
    experiment = {"name": record.get("experiment") or "rerun", "vit_configs": [record["model"]],
                  "hardware": {"gpu_ids": "all" if gpu is None else [gpu], "numa_nodes": [node], "placement": mode},
                  "test": record["test"], "max_workers": 1}
    placement = {k: record.get(k) for k in ("gpu_id", "cpu_node", "mem_node", "placement", "numa_distance", "lane",
                                            "placement_mode", "pool_node", "study", "sweep_point", "repeat")}
    return {"experiment": experiment, "placement": placement,
            "versions": {"torch": env.get("torch"), "cuda": env.get("cuda_runtime"), "driver": env.get("driver")},
            "gpu_model": env.get("gpu_name"), "cpu_model": env.get("cpu_model"), "code_version": None}
