"""The product's copy micro-pass against a raw torch copy loop of the same bytes, in one process, on one GPU.

Issue 13's acceptance: the micro-pass H2D within 3% of a raw pinned copy loop at 4.8 MB (batch 8 of
3x224x224 fp32) and 38.5 MB (batch 64). The raw loop: a pinned host tensor copied to the device K times
back to back (``non_blocking``) between two CUDA events, repeated, median GB/s; D2H likewise into a
pinned host tensor. The product's pass: ``Engine(spec, cuda:0).copy_bandwidth()`` of a light_d2 run
(batch 8 and 64, pinned pool), after the engine's warm-up. The product's D2H moves the model's outputs
(logits and pooled embedding), so its raw counterpart is measured at those bytes too.

Usage: ``python bench/copy_check.py [--reps 21]`` (prefix ``numactl --cpunodebind=0 --membind=0`` to bind).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

IMAGE = [3, 224, 224]
BATCHES = (8, 64)  # 4,816,896 and 38,535,168 bytes of fp32 images
MODEL = {"name": "light_d2", "patch_size": 32, "depth": 2, "heads": 4, "dim": 256, "mlp_dim": 1024, "num_classes": 1000}
TARGET_H2D = 0.03
WINDOW_MS = 5.0  # each event pair brackets about this much copying
# TestConfig defaults, used where numa_ops.config cannot be imported (no pydantic or hydra on the host)
TEST_DEFAULTS = {"compile_model": False, "timeout_s": 600, "warmup_batches": 5, "pinned_memory": True,
                 "execution": "eager", "d2h_mode": "outputs", "telemetry": "off", "ci_target": 0.02,
                 "min_trials": 6, "max_trials": 20, "max_trial_time_s": 120.0, "min_trial_s": 0.5, "repeats": 1,
                 "intra_op_threads": None}


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def sleep_cycles_per_ms(torch: Any) -> float:
    """Clock cycles per ms of ``torch.cuda._sleep`` on this GPU (the fastest of a few)."""
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = 0.0
    for cycles in (200_000, 1_000_000, 1_000_000, 1_000_000):
        torch.cuda._sleep(cycles)
        e0.record()
        torch.cuda._sleep(cycles)
        e1.record()
        e1.synchronize()
        ms = e0.elapsed_time(e1)
        if ms > 0:
            best = max(best, cycles / ms)
    return best or 1.5e6


def raw_copy(torch: Any, nbytes: int, direction: str, reps: int, cycles_per_ms: float | None = None) -> dict[str, Any]:
    """Median GB/s of K back-to-back ``non_blocking`` copies of ``nbytes`` per event pair, ``reps`` times.

    ``cycles_per_ms`` given: gated, a spin kernel first holds the stream while the K copies are enqueued
    (sized from the measured enqueue time), so the events bracket GPU time only.
    """
    n = nbytes // 4
    host = torch.empty(n, dtype=torch.float32, pin_memory=True).fill_(1.0)
    dev = torch.empty(n, dtype=torch.float32, device="cuda")
    src, dst = (host, dev) if direction == "h2d" else (dev, host)
    stream = torch.cuda.Stream()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm: first copies pay for mappings
            dst.copy_(src, non_blocking=True)
        torch.cuda.synchronize()
        e0.record()
        dst.copy_(src, non_blocking=True)
        e1.record()
        e1.synchronize()
        one_ms = max(e0.elapsed_time(e1), 1e-3)
        k = max(8, min(256, math.ceil(WINDOW_MS / one_ms)))
        spin_ms = 1.0
        rates, issues = [], []
        for _ in range(reps):
            if cycles_per_ms:
                torch.cuda._sleep(max(1, int(spin_ms * cycles_per_ms)))
            c0 = time.perf_counter()
            e0.record()
            for _ in range(k):
                dst.copy_(src, non_blocking=True)
            e1.record()
            issue_ms = (time.perf_counter() - c0) * 1e3
            e1.synchronize()
            issues.append(issue_ms)
            spin_ms = 1.5 * max(issues[-5:]) + 0.1
            ms = e0.elapsed_time(e1) / k
            rates.append(nbytes / (ms / 1e3) / 1e9)
    del host, dev
    return {"gbps": statistics.median(rates), "copies_per_event": k, "min": min(rates), "max": max(rates),
            "issue_ms": statistics.median(issues), "gated": bool(cycles_per_ms)}


def test_section(batch: int) -> dict[str, Any]:
    wanted = {"batch_size": batch, "tensor_shape": IMAGE, "num_samples": 400, "memory_size_mb": 256,
              "warmup_batches": 5, "telemetry": "off", "pinned_memory": True, "execution": "eager"}
    try:
        from numa_ops.config import TestConfig

        return TestConfig(**wanted).model_dump()
    except Exception:  # noqa: BLE001 - no pydantic/hydra here: the defaults written out above
        return {**TEST_DEFAULTS, **wanted}


def product_copy(torch: Any, batch: int) -> dict[str, Any]:
    """The product's copy micro-pass of a light_d2 run at ``batch`` (pinned pool), or why it could not run."""
    try:
        from numa_ops.worker.engine import Engine
    except Exception as exc:  # noqa: BLE001 - report, do not crash the raw half
        return {"error": f"numa_ops.worker.engine.Engine: {type(exc).__name__}: {exc}"}
    spec = {"test": test_section(batch), "model": dict(MODEL), "gpu_id": 0, "cpu_node": 0, "mem_node": 0,
            "placement_mode": "process", "pool_node": 0, "run_id": f"copy_check.b{batch}"}
    engine = None
    try:
        from numa_ops.config import TestConfig, VitConfig

        engine = Engine(VitConfig(**spec["model"]), TestConfig(**spec["test"]), torch.device("cuda:0"))
        if not hasattr(engine, "copy_bandwidth"):
            return {"error": "Engine has no copy_bandwidth() in this checkout"}
        engine.warmup(spec["test"]["warmup_batches"])
        out = dict(engine.copy_bandwidth())
        out.setdefault("h2d_bytes", engine.pool.batch_bytes)
        out.setdefault("d2h_bytes", getattr(engine, "d2h_bytes", None))
        return out
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
        torch.cuda.empty_cache()


def _f(x: Any, digits: int = 1) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) else "-"


def _ratio(a: Any, b: Any) -> float | None:
    return a / b if isinstance(a, int | float) and isinstance(b, int | float) and b else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=21, help="event pairs per raw measurement")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        say("copy_check: torch is not installed here; this check needs torch with CUDA and a GPU.")
        return 2
    if not torch.cuda.is_available():
        say("copy_check: no CUDA device here (torch.cuda.is_available() is False); this check runs on a GPU host.")
        return 2
    torch.cuda.set_device(0)
    cycles = sleep_cycles_per_ms(torch)
    say(f"copy_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
        f"window {WINDOW_MS} ms per event pair, {args.reps} pairs per raw measurement")
    rows = []
    for batch in BATCHES:
        h2d_bytes = batch * math.prod(IMAGE) * 4
        t0 = time.perf_counter()
        raw_h2d_before = raw_copy(torch, h2d_bytes, "h2d", args.reps)
        prod = product_copy(torch, batch)
        raw_h2d_after = raw_copy(torch, h2d_bytes, "h2d", args.reps)
        raw_h2d_gated = raw_copy(torch, h2d_bytes, "h2d", args.reps, cycles)
        d2h_bytes = prod.get("d2h_bytes") or batch * (MODEL["num_classes"] + MODEL["dim"]) * 4
        raw_d2h = raw_copy(torch, int(d2h_bytes), "d2h", args.reps, cycles)
        raw_d2h_ungated = raw_copy(torch, int(d2h_bytes), "d2h", args.reps)
        raw_d2h_full = raw_copy(torch, h2d_bytes, "d2h", args.reps)
        raw_h2d = statistics.median([raw_h2d_before["gbps"], raw_h2d_after["gbps"]])
        rows.append({"batch": batch, "h2d_bytes": h2d_bytes, "d2h_bytes": int(d2h_bytes), "raw_h2d": raw_h2d,
                     "raw_h2d_runs": (raw_h2d_before["gbps"], raw_h2d_after["gbps"]),
                     "raw_h2d_gated": raw_h2d_gated["gbps"], "k": raw_h2d_before["copies_per_event"],
                     "raw_d2h": raw_d2h["gbps"], "raw_d2h_ungated": raw_d2h_ungated["gbps"],
                     "raw_d2h_issue_ms": raw_d2h_ungated["issue_ms"], "raw_d2h_full": raw_d2h_full["gbps"],
                     "prod": prod,
                     "seconds": time.perf_counter() - t0})
        if prod.get("error"):
            say(f"batch {batch}: product copy pass unavailable: {prod['error']}")
            if prod.get("traceback"):
                say(prod["traceback"])
        else:
            say(f"batch {batch}: product pass {({k: v for k, v in prod.items() if k != 'traceback'})}")
    say("")
    say("(raw H2D: plain loop, median of a run before and one after the product pass; raw D2H: gated, the "
        "product's D2H bytes)")
    say("| batch | H2D bytes | raw H2D GB/s | product H2D GB/s | ratio | within 3% | D2H bytes | raw D2H GB/s "
        "| product D2H GB/s | ratio |")
    say("|---|---|---|---|---|---|---|---|---|---|")
    failed = False
    for r in rows:
        prod = r["prod"]
        h2d_ratio, d2h_ratio = _ratio(prod.get("h2d_gbps"), r["raw_h2d"]), _ratio(prod.get("d2h_gbps"), r["raw_d2h"])
        ok = h2d_ratio is not None and abs(h2d_ratio - 1) <= TARGET_H2D
        failed |= not ok
        say(f"| {r['batch']} | {r['h2d_bytes']:,} | {_f(r['raw_h2d'])} | {_f(prod.get('h2d_gbps'))} | "
            f"{_f(h2d_ratio, 3)} | {'yes' if ok else 'NO' if h2d_ratio is not None else '-'} | {r['d2h_bytes']:,} | "
            f"{_f(r['raw_d2h'])} | {_f(prod.get('d2h_gbps'))} | {_f(d2h_ratio, 3)} |")
    say("")
    for r in rows:
        say(f"batch {r['batch']}: raw H2D before/after the product pass {_f(r['raw_h2d_runs'][0])} / "
            f"{_f(r['raw_h2d_runs'][1])} GB/s ({r['k']} copies per event pair); raw H2D gated "
            f"{_f(r['raw_h2d_gated'])} GB/s; raw D2H of {r['d2h_bytes']:,} B gated {_f(r['raw_d2h'])}, ungated "
            f"{_f(r['raw_d2h_ungated'])} GB/s (enqueue {_f(r['raw_d2h_issue_ms'], 2)} ms per pair); "
            f"raw D2H of the full batch ({r['h2d_bytes']:,} B) {_f(r['raw_d2h_full'])} GB/s")
    say(f"target: product H2D within {100 * TARGET_H2D:.0f}% of raw: {'met' if not failed else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
