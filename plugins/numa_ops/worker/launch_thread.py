"""The launching thread as a measured resource: its core, its speed, and what disturbed it.

- **One core at a time, chosen and held.** The thread that enqueues the GPU's work is pinned to one
  core of the CPU node the worker is bound to. Candidates are timed with the CPU-speed control and
  the fastest few are held: a host-wide ``flock`` per core keeps workers of other lanes (other GPUs
  on the same node) off them, and the kernel drops the locks if the worker dies. The GPU hosts' vCPUs
  flip between a fast and a slow state over seconds, each on its own (measured on an H100 host: about
  265k and 155k control ops/s), so between trials the thread moves to whichever held core is fastest
  then; it never moves inside a trial.
- **A CPU-speed control.** A fixed CPU-side yardstick (a loop of tiny CPU tensor operations: the
  same Python and dispatcher path a kernel launch takes, without touching the GPU) timed beside every
  trial and in short samples inside its serial pass (their time left out of the pass's). The GPU hosts are
  VMs whose vCPUs differ in speed by core and over time: a launch-bound throughput moves with this rate, so
  the record carries it to flag and to adjust comparisons.
- **Disturbances.** Per trial: involuntary context switches of the thread, its CPU migrations, and
  the steal time of its core (the hypervisor running someone else).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from numa_ops.worker.metric_types import DisturbanceJson, LaunchCoreJson

CONTROL_OPS = 1000  # tensor operations per control sample (about 3-6 ms on a server core)
CONTROL_SAMPLES = 5
MAX_CANDIDATES = 4
HOLD = 3  # cores a worker keeps to move its launching thread among
HOP_OPS = 200  # ops per sample when choosing among them between trials
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def control_rate(samples: int = CONTROL_SAMPLES, ops: int = CONTROL_OPS) -> float:
    """Operations per second of the CPU-speed control on the calling thread's core (median of samples)."""
    x = torch.zeros(1)
    rates = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(ops):
            x.add_(1.0)
        rates.append(ops / (time.perf_counter() - t0))
    rates.sort()
    return rates[len(rates) // 2]


def _read_migrations() -> int | None:
    try:
        for line in Path("/proc/thread-self/sched").read_text().splitlines():
            if line.startswith("se.nr_migrations"):
                return int(line.split(":")[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_steal_ticks(cpu: int | None) -> int | None:
    if cpu is None:
        return None
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{cpu} "):
                return int(line.split()[8])
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class Disturbance:
    """Counters of the calling thread and its core, read at the start of a trial; ``since()`` the deltas."""

    cpu: int | None
    nivcsw: int = 0
    migrations: int | None = None
    steal: int | None = None

    @classmethod
    def now(cls, cpu: int | None) -> Disturbance:
        usage = resource.getrusage(getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF))
        return cls(cpu, usage.ru_nivcsw, _read_migrations(), _read_steal_ticks(cpu))

    def since(self) -> DisturbanceJson:
        later = Disturbance.now(self.cpu)
        return {
            "involuntary_switches": later.nivcsw - self.nivcsw,
            "migrations": None
            if later.migrations is None or self.migrations is None
            else later.migrations - self.migrations,
            "steal_ms": None
            if later.steal is None or self.steal is None
            else (later.steal - self.steal) * 1000 / _CLK_TCK,
        }


def core_lock_dir() -> Path:
    """Host-wide folder of the per-core locks (beside the outputs' other host locks)."""
    from numa_ops import paths

    return paths.outputs_dir() / ".locks" / "cores"


@dataclass
class LaunchCore:
    """The cores the launching thread may run on (held with locks), the one it is on, and why."""

    cpu: int | None
    allowed: list[int]
    rates: dict[int, float] = field(default_factory=dict)
    taken_by_others: list[int] = field(default_factory=list)
    locks: dict[int, FileLock] = field(default_factory=dict)
    note: str | None = None
    hops: int = 0

    @property
    def held(self) -> list[int]:
        """The cores this worker holds (the launching thread moves only among them)."""
        return sorted(self.locks) or ([self.cpu] if self.cpu is not None else [])

    def others(self) -> set[int]:
        """The worker's other CPUs (for helper processes such as telemetry): all but the held cores."""
        rest = set(self.allowed) - set(self.held)
        return rest or set(self.allowed)

    def hop(self) -> int | None:
        """Between trials: move the thread to the fastest of the held cores now (a vCPU's speed changes
        over seconds); returns the core it is on. With one core held, the thread is put (back) on it."""
        if len(self.held) < 2:
            if self.cpu is not None:
                os.sched_setaffinity(0, {self.cpu})
            return self.cpu
        now = {}
        for cpu in self.held:
            os.sched_setaffinity(0, {cpu})
            now[cpu] = control_rate(2, HOP_OPS)
        best = max(now, key=now.__getitem__)
        os.sched_setaffinity(0, {best})
        self.hops += best != self.cpu
        self.cpu = best
        return best

    def summary(self) -> LaunchCoreJson:
        return {"cpu": self.cpu, "held": self.held, "hops": self.hops,
                "candidates_ops_per_s": {str(k): round(v) for k, v in self.rates.items()},
                "taken_by_other_workers": self.taken_by_others, "allowed_cpus": len(self.allowed), "note": self.note}

    def release(self) -> None:
        for lock in self.locks.values():
            lock.release()
        self.locks = {}


def pin_launching_thread(
    lock_dir: Path | None = None, candidates: int = MAX_CANDIDATES, hold: int = HOLD, allowed: list[int] | None = None
) -> LaunchCore:
    """Pin the calling thread to the fastest free core among those the worker is bound to (or ``allowed``:
    one node's CPUs, for a paired run's thread arm on that node).

    Up to ``candidates`` free cores (not locked by another worker) are timed with the control; the
    ``hold`` fastest stay locked, and the thread moves among them between trials (``LaunchCore.hop``).
    Where no lock can be taken the fastest core is used anyway, and said.
    """
    allowed = sorted(os.sched_getaffinity(0) if allowed is None else allowed)
    if not allowed:
        raise RuntimeError("no CPU to pin the launching thread to (the node's CPUs are not among the worker's)")
    if len(allowed) == 1:
        os.sched_setaffinity(0, {allowed[0]})
        return LaunchCore(allowed[0], allowed, note="the worker is bound to one CPU")
    lock_dir = lock_dir or core_lock_dir()
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        lock_dir = None
    free, taken = [], []
    locks: dict[int, FileLock] = {}
    # spread the candidates over the node: the first cores are where the OS and other lanes land first
    for cpu in allowed[1:] + allowed[:1]:
        if len(free) >= candidates:
            break
        if lock_dir is None:
            free.append(cpu)
            continue
        lock = FileLock(str(lock_dir / f"cpu{cpu}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            taken.append(cpu)
            continue
        locks[cpu] = lock
        free.append(cpu)
    note = None
    if not free:
        free, note = allowed[:candidates], "every core of the node is held by another worker: sharing one"
    rates = {}
    for cpu in free:
        os.sched_setaffinity(0, {cpu})
        control_rate(2)  # settle on the core
        rates[cpu] = control_rate()
    ranked = sorted(rates, key=rates.__getitem__, reverse=True)
    keep = set(ranked[:max(1, hold)])
    os.sched_setaffinity(0, {ranked[0]})
    for cpu in list(locks):
        if cpu not in keep:
            locks.pop(cpu).release()
    return LaunchCore(ranked[0], allowed, rates, taken, locks, note)
