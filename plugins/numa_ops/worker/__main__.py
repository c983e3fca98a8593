"""``python -m numa_ops.worker --runs FILE --folder-path DIR``: measure runs one after another.

Each run's record is written atomically as soon as the run ends. Progress goes to stdout as
lines starting with ``@@numa_lab`` followed by JSON, which the launching side reads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from numa_ops import settings
from numa_ops.worker.protocol import emit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numa_ops.worker")
    parser.add_argument("--runs", required=True, type=Path, help="JSON list of run specs to measure, in order")
    parser.add_argument("--folder-path", required=True, type=Path, help="the run folder records go into")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import torch  # heavy imports after argument parsing: a bad call fails fast

    from numa_ops import results
    from numa_ops.worker import coordination
    from numa_ops.worker.environment import environment
    from numa_ops.worker.measure import measure_run

    specs = json.loads(args.runs.read_text())
    profile = settings.worker_profile()
    from numa_ops.worker.launch_thread import pin_launching_thread

    allowed = os.sched_getaffinity(0)
    gpu_id = specs[0]["gpu_id"] if specs else None
    fake_gpu = gpu_id is not None and not torch.cuda.is_available() and settings.fake_gpu()
    if fake_gpu:  # tests of scheduling on simulated multi-GPU hosts: measured on the CPU, and said so
        device = torch.device("cpu")
    elif gpu_id is not None and not torch.cuda.is_available():
        device = None
    else:
        device = torch.device("cuda:0" if gpu_id is not None else "cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
            torch.cuda.init()
    # intra-op threads: the config's, else one on a GPU (the launching thread alone) and every CPU the
    # worker is bound to on the CPU; NUMA_LAB_TORCH_THREADS caps it
    wanted = (specs[0]["test"].get("intra_op_threads") if specs else None) or (
        1 if device is not None and device.type == "cuda" else len(allowed))
    cap = settings.torch_threads_cap()
    threads = max(1, min(wanted, cap) if cap > 0 else wanted)
    torch.set_num_threads(threads)
    # the launching thread gets one core of the node to itself, unless intra-op threads share the work:
    # they inherit the thread's affinity, and would all land on its core
    core = pin_launching_thread() if threads == 1 else None
    env = environment(gpu_id)
    startup_s = time.perf_counter() - started
    emit("ready", startup_s=startup_s, pid=os.getpid(), device=str(device))

    lane_started = settings.worker_lane_started()
    failures = 0
    for spec in specs:
        claim = coordination.claim(args.folder_path, spec, lane_started) if spec.get("pool") else None
        if isinstance(claim, str):  # a pooled run another lane has taken
            emit("skip", run_id=spec["run_id"], reason=claim)
            continue
        emit("start", run_id=spec["run_id"], model=spec["model"]["name"])
        record = results.base_record(spec)
        record["started_at"] = results.now()
        t0 = time.perf_counter()
        pattern = coordination.PatternRun(args.folder_path, spec, emit) if spec.get("exclusive") else None
        try:
            if device is None:
                raise RuntimeError(f"GPU {gpu_id} was requested but CUDA is not available in the worker")
            metrics = measure_run(spec, device, nvml_index=gpu_id, before_timing=pattern and pattern.before_timing,
                                  core=core)
            record.update(success=True, error=None, device=metrics["device"], metrics=metrics)
            if pattern and pattern.lock_wait_s is not None:
                metrics["pattern_lock_wait_s"] = pattern.lock_wait_s
        except Exception as exc:  # noqa: BLE001 - a failing run is recorded and the lane goes on
            failures += 1
            text = str(exc).lower()
            oom = isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text
            reason = f"{'out of memory' if oom else type(exc).__name__}: {exc}".strip()
            record.update(success=False, error=reason[:2000], device=str(device), metrics=None)
            if oom:
                record["failed_batch_size"] = spec["test"]["batch_size"]
            record["traceback"] = traceback.format_exc(limit=8)
            if device is not None and device.type == "cuda":
                torch.cuda.empty_cache()
        group = pattern.finish() if pattern else None
        record["duration"] = time.perf_counter() - t0
        record["finished_at"] = results.now()
        record["environment"] = env
        record["worker_startup_s"] = startup_s
        if group is not None:
            record["group"] = group
        if fake_gpu:
            record["fake_gpu"] = True
        record["profile"] = profile
        results.write_json_atomic(results.record_path(args.folder_path, spec["run_id"]), record)
        if claim is not None:
            claim.release()
        emit(
            "end",
            run_id=spec["run_id"],
            success=record["success"],
            duration=record["duration"],
            samples_per_s=(record.get("metrics") or {}).get("samples_per_s"),
            error=record.get("error"),
        )
    if core is not None:
        core.release()
    emit("done", failures=failures, total_s=time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
