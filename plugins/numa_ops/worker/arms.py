"""The arms of a paired run (``hardware.placement=paired``) and what each holds in the worker.

- A **memory arm** has its own host pool and D2H destinations, bound to its node with ``mbind`` before first
  touch (and registered with CUDA where pinned); the launching thread stays on the worker's node. Switching
  arms swaps the engine's buffers.
- A **thread arm** holds launching cores on its node (the worker is bound to the CPUs of every arm's node);
  memory stays where numactl put it. Switching arms moves the launching thread.
- A **process arm** is a whole worker process: the worker itself for the first arm, a resident partner bound to
  the arm's node for each other one; they take turns trial by trial.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from numa_ops.specs import Arm, RunSpec
from numa_ops.topology import parse_cpulist
from numa_ops.worker.engine import SLOTS, Engine
from numa_ops.worker.launch_thread import LaunchCore, pin_launching_thread
from numa_ops.worker.metric_types import ArmSummaryJson, MetricsJson, PartnerAnswer, PartnerRequest, PoolPagesJson
from numa_ops.worker.pages import placement_proof
from numa_ops.worker.pool import BoundBuffer, HostPool

PAIRED_PURPOSE = "hardware.placement=paired (memory arm)"


def node_cpus(node: int, sysfs: Path = Path("/sys")) -> list[int]:
    """The CPUs of NUMA ``node`` that this process may use."""
    text = (sysfs / f"devices/system/node/node{node}/cpulist")
    try:
        cpus = parse_cpulist(text.read_text().strip())
    except OSError:
        cpus = list(range(os.cpu_count() or 1)) if node == 0 else []
    return sorted(set(cpus) & os.sched_getaffinity(0))


def thread_arm_cores(specs: list[RunSpec], sysfs: Path = Path("/sys")) -> dict[int, LaunchCore]:
    """One set of held launching cores per node of the lane's thread arms (arms on one node share it).

    Every node's CPUs are read before the first pin: pinning narrows the calling thread's own affinity, and the
    next node's CPUs would no longer be among it."""
    nodes = sorted({arm.node for spec in specs for arm in spec.arms})
    cpus = {node: node_cpus(node, sysfs) for node in nodes}
    return {node: pin_launching_thread(allowed=cpus[node]) for node in nodes}


@dataclass
class ArmBuffers:
    """A memory arm's host pool and per-slot D2H destinations, all on the arm's node."""

    pool: HostPool
    host_out: list[list[torch.Tensor]] | None
    pages: PoolPagesJson
    outputs: list[BoundBuffer] = field(default_factory=list)

    def close(self) -> None:
        for buffer in self.outputs:
            buffer.close()
        self.pool.close()


def memory_pools(spec: RunSpec, cuda: bool) -> list[HostPool]:
    """Each memory arm's host pool, bound to its node (pinned where the arm says and the device is a GPU)."""
    test, pools = spec.test, []
    try:
        for arm in spec.arms:
            pools.append(HostPool(test.memory_size_mb, test.batch_size, list(test.tensor_shape),
                                  pinned=cuda and arm.pinned, node=arm.node, purpose=PAIRED_PURPOSE))
    except BaseException:
        for pool in pools:
            pool.close()
        raise
    return pools


def memory_buffers(spec: RunSpec, engine: Engine, pools: list[HostPool]) -> list[ArmBuffers]:
    """Each memory arm's buffers: its pool, and D2H destinations of the model's output shapes on its node."""
    out: list[ArmBuffers] = []
    for arm, pool in zip(spec.arms, pools, strict=True):
        outputs: list[BoundBuffer] = []
        host_out = None
        if engine.cuda:  # on the CPU there is no D2H copy: the engine's own destinations are never read
            slots = [[BoundBuffer(shape, arm.node, pinned=True) for shape in engine.out_shapes] for _ in range(SLOTS)]
            outputs = [b for slot in slots for b in slot]
            host_out = [[b.data for b in slot] for slot in slots]
        out.append(ArmBuffers(pool, host_out, placement_proof(pool.data.data_ptr(), arm.node), outputs))
    return out


def arm_summary(arm: Arm) -> ArmSummaryJson:
    """What the record says of an arm before its numbers."""
    return ArmSummaryJson(name=arm.name, node=arm.node, pinned=arm.pinned, placement=arm.placement,
                          numa_distance=arm.numa_distance)


class PartnerProcess:
    """A whole-process arm: a resident partner worker bound by numactl to the arm's node (CPU and all memory),
    taking its trials when asked (:mod:`numa_ops.worker.partner`)."""

    def __init__(self, spec: RunSpec, node: int, numactl: str | None):
        if numactl is None:
            raise RuntimeError("paired whole-process arms need numactl to bind the partner process to its node")
        argv = [numactl, f"--cpunodebind={node}", f"--membind={node}", sys.executable, "-m", "numa_ops.worker.partner"]
        self.node = node
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=dict(os.environ))
        self._ask({"spec": spec.to_json(), "node": node}, expect="ready")

    def _ask(self, message: PartnerRequest, expect: str) -> PartnerAnswer:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        answer = json.loads(line) if line.strip() else {}
        if expect not in answer:
            why = answer.get("error") or self._stderr_tail() or f"the partner process exited ({self.proc.poll()})"
            raise RuntimeError(f"the partner process on node {self.node} failed: {why}")
        return answer

    def _stderr_tail(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return " | ".join(self.proc.stderr.read().strip().splitlines()[-3:])

    def sizes(self, sizes: dict[str, int]) -> None:
        self._ask({"sizes": sizes}, expect="ok")

    def trial(self, pipelined: bool) -> PartnerAnswer:
        """One trial in the partner: its serial rate, CPU-speed control, launching CPU and length."""
        return self._ask({"trial": {"pipelined": pipelined}}, expect="rate")

    def finish(self) -> MetricsJson:
        """The partner's copy pass and metrics; it exits after."""
        metrics = self._ask({"finish": True}, expect="metrics")["metrics"]
        self.close()
        return metrics

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
