"""A lane -> the argv and environment of its bound worker. Argv lists only, never a shell string.

The profiler that may wrap the worker (``profile``) is :mod:`numa_ops.nsys`'s.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from numa_ops import paths, settings
from numa_ops.topology import numactl_path

__all__ = ["Launch", "BindingRefused", "numactl_path", "worker_command"]


@dataclass(frozen=True)
class Launch:
    """What to execute for one worker: argv, extra environment, and how it is bound."""

    argv: list[str]
    env: dict[str, str]
    binding: str


class BindingRefused(RuntimeError):
    """A lane whose placement this host cannot set up (``hardware.placement=pool`` without numactl)."""


def _check_nodes(
    gpu_id: int | None, cpu_node: int, mem_node: int, pool_node: int | None, thread_nodes: tuple[int, ...]
) -> None:
    """Refuse a node or GPU that is not a non-negative integer (None where it may be absent)."""
    if not isinstance(cpu_node, int) or not isinstance(mem_node, int) or cpu_node < 0 or mem_node < 0:
        raise ValueError(f"NUMA nodes must be non-negative integers, got {cpu_node!r}, {mem_node!r}")
    if pool_node is not None and (not isinstance(pool_node, int) or isinstance(pool_node, bool) or pool_node < 0):
        raise ValueError(f"pool_node must be a non-negative integer or None, got {pool_node!r}")
    if gpu_id is not None and (not isinstance(gpu_id, int) or gpu_id < 0):
        raise ValueError(f"gpu_id must be a non-negative integer or None, got {gpu_id!r}")
    if any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in thread_nodes):
        raise ValueError(f"thread_nodes must be non-negative integers, got {thread_nodes!r}")


def worker_command(
    runs_file: Path,
    folder_path: Path,
    gpu_id: int | None,
    cpu_node: int,
    mem_node: int,
    python: str | None = None,
    profile: list[str] | None = None,
    pool_node: int | None = None,
    paired: str | None = None,
    thread_nodes: tuple[int, ...] = (),
) -> Launch:
    """``numactl --cpunodebind=N --membind=M python -m numa_ops.worker ...`` for one lane.

    ``pool_node`` (``hardware.placement=pool``): the worker is bound to ``cpu_node``/``mem_node`` (the GPU's
    own node) all the same, and binds only its host pool to ``pool_node`` itself (mbind); without numactl
    the worker could not be kept local, so :class:`BindingRefused` is raised rather than run it unbound.
    ``paired`` (``hardware.placement=paired``): memory arms bind their own buffers (mbind) in a worker bound to
    ``cpu_node``; thread arms need the CPUs of every node in ``thread_nodes`` (``--cpunodebind=0,1``) with memory
    on ``mem_node``. Both need numactl, like ``pool_node``.
    """
    _check_nodes(gpu_id, cpu_node, mem_node, pool_node, thread_nodes)
    worker = [python or sys.executable, "-m", "numa_ops.worker",
              "--runs", str(runs_file), "--folder-path", str(folder_path)]
    worker = [*(profile or []), *worker]  # numactl binds nsys and, through it, the worker
    numactl = numactl_path()
    if numactl is None and pool_node is not None:
        raise BindingRefused(
            f"hardware.placement=pool: numactl not found (or NUMA_LAB_NUMACTL=off), so the worker cannot be kept "
            f"on node {cpu_node} while its host pool goes on node {pool_node}; use hardware.placement=process"
        )
    if numactl is None and paired is not None:
        raise BindingRefused(
            f"hardware.placement=paired: numactl not found (or NUMA_LAB_NUMACTL=off), so the worker cannot be kept "
            f"on node {cpu_node} while its {paired} arms move; use hardware.placement=process"
        )
    cpus = ",".join(map(str, thread_nodes)) if thread_nodes else str(cpu_node)
    if numactl:
        argv = [numactl, f"--cpunodebind={cpus}", f"--membind={mem_node}", *worker]
        binding = f"numactl --cpunodebind={cpus} --membind={mem_node}"
        if pool_node is not None:
            binding += f"; host pool mbind to node {pool_node}"
        if paired is not None:
            binding += f"; paired {paired} arms inside the worker"
    else:
        argv = worker
        binding = "none (numactl not found: the worker ran unbound)"
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.plugins_dir()), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": "" if gpu_id is None else str(gpu_id),
        settings.WORKER_BINDING: binding,
    }
    return Launch(argv, env, binding)
