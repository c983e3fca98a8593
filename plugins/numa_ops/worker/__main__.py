"""``python -m numa_ops.worker --runs FILE --folder-path DIR``: measure runs one after another.

Each run's record is written atomically as soon as the run ends. Progress goes to stdout as
lines starting with ``@@numa_lab`` followed by JSON (:mod:`numa_ops.worker.protocol`), which the
launching side reads. Heavy packages (torch, the model) are imported after the arguments are parsed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from numa_ops import settings
from numa_ops.worker import protocol
from numa_ops.worker.protocol import emit

if TYPE_CHECKING:
    import torch

    from numa_ops.record import Environment, RunRecord
    from numa_ops.specs import RunSpec
    from numa_ops.worker.launch_thread import LaunchCore


@dataclass
class Worker:
    """What every run of this worker shares: its device, its launching core, its environment."""

    folder_path: Path
    gpu_id: int | None
    device: torch.device | None  # None: a GPU was asked for but CUDA is not available
    fake_gpu: bool  # a simulated GPU measured on the CPU (tests of multi-GPU scheduling)
    core: LaunchCore | None
    environment: Environment
    startup_s: float
    profile: settings.ProfileNote  # the supervisor's note on the nsys session
    arm_cores: dict[int, LaunchCore] | None = None  # paired thread arms: held launching cores, by node


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m numa_ops.worker")
    parser.add_argument("--runs", required=True, type=Path, help="JSON list of run specs to measure, in order")
    parser.add_argument("--folder-path", required=True, type=Path, help="the run folder records go into")
    return parser.parse_args(argv)


def _open_device(gpu_id: int | None) -> tuple[torch.device | None, bool]:
    """The device to measure on, and whether it is a simulated GPU measured on the CPU."""
    import torch

    fake_gpu = gpu_id is not None and not torch.cuda.is_available() and settings.fake_gpu()
    if fake_gpu:  # tests of scheduling on simulated multi-GPU hosts: measured on the CPU, and said so
        return torch.device("cpu"), True
    if gpu_id is not None and not torch.cuda.is_available():
        return None, False
    device = torch.device("cuda:0" if gpu_id is not None else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.init()
    return device, False


def _set_threads(specs: list[RunSpec], device: torch.device | None) -> int:
    """Intra-op threads: the config's, else one on a GPU (the launching thread alone) and every CPU the
    worker is bound to on the CPU; ``NUMA_LAB_TORCH_THREADS`` caps it."""
    import torch

    thread_arms = bool(specs) and specs[0].paired == "thread"  # the launching thread is what the arms move
    wanted = (specs[0].test.intra_op_threads if specs else None) or (
        1 if thread_arms or (device is not None and device.type == "cuda") else len(os.sched_getaffinity(0)))
    cap = settings.torch_threads_cap()
    threads = max(1, min(wanted, cap) if cap > 0 else wanted)
    torch.set_num_threads(threads)
    return threads


def _start(folder_path: Path, specs: list[RunSpec], started: float) -> Worker:
    """Open the device, set the threads, pin the launching thread, read the environment: the worker is ready."""
    from numa_ops.worker.environment import environment
    from numa_ops.worker.launch_thread import pin_launching_thread

    gpu_id = specs[0].gpu_id if specs else None
    device, fake_gpu = _open_device(gpu_id)
    threads = _set_threads(specs, device)
    # the launching thread gets one core of the node to itself, unless intra-op threads share the work:
    # they inherit the thread's affinity, and would all land on its core
    arm_cores = None
    if specs and specs[0].paired == "thread":
        from numa_ops.worker.arms import thread_arm_cores

        arm_cores = thread_arm_cores(specs)
        core = arm_cores[specs[0].arms[0].node]
    else:
        core = pin_launching_thread() if threads == 1 else None
    return Worker(folder_path, gpu_id, device, fake_gpu, core, environment(gpu_id), time.perf_counter() - started,
                  settings.worker_profile(), arm_cores)


def _measure_into(
    record: RunRecord, spec: RunSpec, worker: Worker, before_timing: Callable[[], None] | None
) -> None:
    """Measure one run into ``record``: its metrics, or why it failed (out of memory said so)."""
    import torch

    from numa_ops.worker.measure import measure_run

    try:
        if worker.device is None:
            raise RuntimeError(f"GPU {worker.gpu_id} was requested but CUDA is not available in the worker")
        metrics = measure_run(spec, worker.device, nvml_index=worker.gpu_id, before_timing=before_timing,
                              core=worker.core, arm_cores=worker.arm_cores)
        record.success, record.error, record.device, record.metrics = True, None, metrics.device, metrics
    except Exception as exc:  # noqa: BLE001 - a failing run is recorded and the lane goes on
        text = str(exc).lower()
        oom = isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text
        reason = f"{'out of memory' if oom else type(exc).__name__}: {exc}".strip()
        record.success, record.error, record.device, record.metrics = False, reason[:2000], str(worker.device), None
        if oom:
            record.failed_batch_size = spec.test.batch_size
        record.traceback = traceback.format_exc(limit=8)
        if worker.device is not None and worker.device.type == "cuda":
            torch.cuda.empty_cache()


def _run_one(spec: RunSpec, worker: Worker) -> RunRecord:
    """Measure one run (a pattern's run waits for its other GPUs first) and write its record."""
    from numa_ops import results
    from numa_ops.worker import coordination

    emit(protocol.START, run_id=spec.run_id, model=spec.model.name)
    record = results.base_record(spec, worker.environment, started_at=results.now())
    t0 = time.perf_counter()
    pattern = coordination.PatternRun(worker.folder_path, spec, emit) if spec.exclusive else None
    _measure_into(record, spec, worker, pattern and pattern.before_timing)
    if record.metrics is not None and pattern and pattern.lock_wait_s is not None:
        record.metrics.pattern_lock_wait_s = pattern.lock_wait_s
    group = pattern.finish() if pattern else None
    record.duration, record.finished_at = time.perf_counter() - t0, results.now()
    record.environment = worker.environment
    record.worker_startup_s = worker.startup_s
    if group is not None:
        record.group = group
    if worker.fake_gpu:
        record.fake_gpu = True
    record.profile = worker.profile
    results.write_record(worker.folder_path, record)
    return record


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    started = time.perf_counter()

    # heavy imports after argument parsing (a bad call fails fast), and before "ready" (start-up includes them)
    import torch  # noqa: F401

    import numa_ops.worker.measure  # noqa: F401
    from numa_ops.specs import runs_from_json
    from numa_ops.worker import coordination

    specs = runs_from_json(json.loads(args.runs.read_text()))
    worker = _start(args.folder_path, specs, started)
    emit(protocol.READY, startup_s=worker.startup_s, pid=os.getpid(), device=str(worker.device))
    lane_started = settings.worker_lane_started()
    failures = 0
    for spec in specs:
        claim = coordination.claim(args.folder_path, spec, lane_started) if spec.pool else None
        if isinstance(claim, str):  # a shared run another lane has taken
            emit(protocol.SKIP, run_id=spec.run_id, reason=claim)
            continue
        record = _run_one(spec, worker)
        failures += not record.success
        if claim is not None:
            claim.release()
        emit(protocol.END, run_id=spec.run_id, success=record.success, duration=record.duration,
             samples_per_s=record.samples_per_s, error=record.error)
    for core in {id(c): c for c in [worker.core, *(worker.arm_cores or {}).values()] if c is not None}.values():
        core.release()
    emit(protocol.DONE, failures=failures, total_s=time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
