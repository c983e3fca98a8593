"""One run's measurement: H2D copy, forward and D2H copy, each timed apart.

On CUDA every stage is bracketed by CUDA events (no host clock around asynchronous work) and the
batch is synchronized before the next one starts (serial mode). On the CPU there is no copy to
time: the forward is timed with ``perf_counter`` and the copies are marked as skipped.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import nullcontext
from typing import Any

import torch

from numa_ops.worker.model import build_model
from numa_ops.worker.pool import HostPool


def _nvtx(name: str):
    if torch.cuda.is_available():
        return torch.cuda.nvtx.range(name)
    return nullcontext()


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p95": None, "p99": None, "mean": None, "min": None, "max": None}
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1)]

    return {
        "median": statistics.median(ordered),
        "p95": q(0.95),
        "p99": q(0.99),
        "mean": statistics.fmean(ordered),
        "min": ordered[0],
        "max": ordered[-1],
    }


def _gbps(nbytes: int, ms: float | None) -> float | None:
    return None if not ms else nbytes / (ms / 1e3) / 1e9


def measure_run(spec: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Measure one run spec on ``device`` and return its metrics."""
    test, model_cfg = spec["test"], spec["model"]
    cuda = device.type == "cuda"
    batch_size, shape = test["batch_size"], test["tensor_shape"]

    t_build = time.perf_counter()
    pool = HostPool(test["memory_size_mb"], batch_size, shape, pinned=cuda)
    pool_s = time.perf_counter() - t_build
    model = build_model(model_cfg, shape).to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    forward = torch.compile(model) if test.get("compile_model") else model

    dev_in = torch.empty(pool.batch_shape, device=device)
    width = model_cfg["dim"]
    classes = model_cfg.get("num_classes", 1000)
    out_logits = torch.empty((batch_size, classes), pin_memory=cuda)
    out_pooled = torch.empty((batch_size, width), pin_memory=cuda)
    d2h_bytes = (out_logits.numel() + out_pooled.numel()) * 4

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    compile_s = None
    with torch.inference_mode():
        t0 = time.perf_counter()
        first = forward(pool.batch(0).to(device))  # first call: compilation happens here
        if cuda:
            torch.cuda.synchronize(device)
        first_call_s = time.perf_counter() - t0
        if test.get("compile_model"):
            compile_s = first_call_s
        del first
        for i in range(test.get("warmup_batches", 3)):
            dev_in.copy_(pool.batch(i), non_blocking=cuda)
            logits, pooled = forward(dev_in)
            out_logits.copy_(logits, non_blocking=cuda)
            out_pooled.copy_(pooled, non_blocking=cuda)
        if cuda:
            torch.cuda.synchronize(device)

        num_batches = math.ceil(test["num_samples"] / batch_size)
        h2d, fwd, d2h, total = [], [], [], []
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)] if cuda else None
        start = time.perf_counter()
        for i in range(num_batches):
            host = pool.batch(i)
            if cuda:
                e0, e1, e2, e3 = events
                e0.record()
                with _nvtx("h2d"):
                    dev_in.copy_(host, non_blocking=True)
                e1.record()
                with _nvtx("forward"):
                    logits, pooled = forward(dev_in)
                e2.record()
                with _nvtx("d2h"):
                    out_logits.copy_(logits, non_blocking=True)
                    out_pooled.copy_(pooled, non_blocking=True)
                e3.record()
                e3.synchronize()
                h2d.append(e0.elapsed_time(e1))
                fwd.append(e1.elapsed_time(e2))
                d2h.append(e2.elapsed_time(e3))
                total.append(e0.elapsed_time(e3))
            else:
                c0 = time.perf_counter()
                logits, pooled = forward(host)
                out_logits.copy_(logits)
                out_pooled.copy_(pooled)
                ms = (time.perf_counter() - c0) * 1e3
                fwd.append(ms)
                total.append(ms)
        if cuda:
            torch.cuda.synchronize(device)
        wall_s = time.perf_counter() - start

    samples = num_batches * batch_size
    stages = {"h2d_ms": _quantiles(h2d), "forward_ms": _quantiles(fwd), "d2h_ms": _quantiles(d2h), "batch_ms": _quantiles(total)}
    return {
        "device": "cuda" if cuda else "cpu",
        "copies": "timed" if cuda else "skipped (cpu: no host-device copy)",
        "timing": "cuda_events_serial" if cuda else "perf_counter_serial",
        "samples_measured": samples,
        "batches": num_batches,
        "wall_s": wall_s,
        "samples_per_s": samples / wall_s,
        "samples_per_s_from_median_batch": batch_size / (stages["batch_ms"]["median"] / 1e3),
        **stages,
        "h2d_bytes_per_batch": pool.batch_bytes if cuda else 0,
        "d2h_bytes_per_batch": d2h_bytes if cuda else 0,
        "h2d_gbps": _gbps(pool.batch_bytes, stages["h2d_ms"]["median"]) if cuda else None,
        "d2h_gbps": _gbps(d2h_bytes, stages["d2h_ms"]["median"]) if cuda else None,
        "pool_mb": pool.nbytes / 2**20,
        "pool_batches": pool.num_batches,
        "pool_pinned": pool.pinned,
        "pool_fill_s": pool_s,
        "parameters": params,
        "first_call_s": first_call_s,
        "compile_s": compile_s,
        "peak_gpu_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
    }
