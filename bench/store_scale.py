"""Loading many run records into DuckDB and building the report: prints seconds for each step.

Usage: ``python bench/store_scale.py [--records 100000] [--folders 100]``. Synthetic records are
written under a temporary outputs folder first (not timed).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))


def _stats(median: float) -> dict:
    return {"min": median * 0.9, "mean": median * 1.01, "median": median, "p95": median * 1.1, "p99": median * 1.2,
            "max": median * 1.3}


def synthetic(run_id: str, folder: str, rng: random.Random) -> dict:
    """A CUDA run record with the fields (and about the size) of one the worker writes."""
    depth = rng.choice([2, 4, 6, 8, 12])
    placement = rng.choice(["local", "remote"])
    rate = 20000 / depth * rng.uniform(0.9, 1.1) * (0.9 if placement == "remote" else 1.0)
    trials = [rate * rng.uniform(0.98, 1.02) for _ in range(10)]
    gpu = rng.randrange(4)
    return {
        "schema": 1, "run_id": run_id, "folder": folder, "experiment": "numa_study", "study": "numa_study",
        "sweep_point": 0, "lane": f"gpu{gpu}-cpu0-mem0", "gpu_id": gpu, "numa_node": 0, "cpu_node": 0,
        "mem_node": 0, "placement": placement, "numa_distance": 10 if placement == "local" else 32, "device": "cuda",
        "model": {"name": f"d{depth}", "patch_size": 32, "depth": depth, "heads": 4, "dim": 256, "mlp_dim": 1024,
                  "num_classes": 1000},
        "test": {"num_samples": 1000, "batch_size": 8, "tensor_shape": [3, 224, 224], "memory_size_mb": 1024,
                 "compile_model": False, "execution": "eager", "timeout_s": 300, "warmup_batches": 10},
        "success": True, "error": None, "duration": 2.0, "worker_startup_s": 3.1,
        "started_at": "2026-11-27T00:00:00+00:00", "finished_at": "2026-11-27T00:00:02+00:00",
        "environment": {"host": "h100-host", "gpu_name": "NVIDIA H100 80GB HBM3", "driver": "570.86.15",
                        "torch": "2.14.1+cu130", "cuda_runtime": "13.0", "python": "3.11.7", "pid": 1234,
                        "pci_bus_id": "00000000:19:00.0", "cpu_model": "Intel Xeon Platinum 8480+", "torch_threads": 8,
                        "binding": {"numactl": "numactl --cpunodebind=0 --membind=0", "cpus_allowed": "0-55",
                                    "mems_allowed": "0"}},
        "metrics": {"samples_per_s": rate,
                    "samples_per_s_ci": {"low": rate * 0.98, "high": rate * 1.02, "rel_half_width": 0.02},
                    "h2d_ms": _stats(0.1), "forward_ms": _stats(depth * 0.3), "d2h_ms": _stats(0.05),
                    "batch_ms": _stats(depth * 0.3 + 0.15), "fwd_gpu_ms": depth * 0.1, "regime": "launch-bound",
                    "launch_overhead_share": 0.66, "execution": "eager", "d2h_mode": "logits", "pool_pinned": True,
                    "parameters": depth * 1_000_000, "flops_per_sample": depth * 10**8, "trials": 10,
                    "ci_target_met": True,
                    "h2d_bytes_per_batch": 4816896, "d2h_bytes_per_batch": 40192, "h2d_gbps": 48.2, "d2h_gbps": 0.8,
                    "pipelined_samples_per_s": rate * 1.2, "ideal_samples_per_s": rate * 1.3, "launch_cpu": 3,
                    "launch_cpu_node": 0, "peak_gpu_mem_mb": 812.5, "compile_s": None, "batches": 125,
                    "telemetry": {"gpu_util_pct_mean": 61.0, "gpu_util_pct_max": 88.0, "mem_used_mb_max": 1900.0,
                                  "pcie_rx_mbps_max": 12000.0, "pcie_tx_mbps_max": 300.0, "sm_clock_mhz_mean": 1980.0,
                                  "power_w_mean": 210.0, "power_w_max": 260.0, "temp_c_max": 51.0, "samples": 40},
                    "pool_pages": {"intended_node": 0, "pages_per_node": {"0": 262144}, "fraction_on_intended": 1.0},
                    "trial_samples_per_s": {"serial": trials, "pipelined": [t * 1.2 for t in trials]}},
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--folders", type=int, default=100)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="numa-lab-scale-"))
    os.environ["NUMA_LAB_OUTPUTS"] = str(base)
    from numa_ops import db, report, results

    rng = random.Random(0)
    per = args.records // args.folders
    t0 = time.perf_counter()
    for f in range(args.folders):
        name = f"scale_{f:04d}"
        for i in range(per):
            rid = f"{name}.r{i:06d}"
            results.write_json_atomic(base / name / "runs" / f"{rid}.json", synthetic(rid, name, rng))
    size = sum(p.stat().st_size for p in (base / "scale_0000" / "runs").glob("*.json")) / per
    print(f"wrote {args.folders * per} records ({size / 1024:.1f} KiB each) in {time.perf_counter() - t0:.1f} s "
          "(not part of the targets)")
    print(f"host: {os.cpu_count()} cores, load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    t0 = time.perf_counter()
    counts = db.load_runs(db.run_folders())
    load_s = time.perf_counter() - t0
    print(f"load: {load_s:.1f} s for {counts['inserted']} new rows (target <= 10 s)")
    t0 = time.perf_counter()
    again = db.load_runs(db.run_folders())
    print(f"load again (nothing new): {time.perf_counter() - t0:.1f} s, {again['inserted']} new rows")
    t0 = time.perf_counter()
    report.write_report(base / "report", "scale")
    print(f"report: {time.perf_counter() - t0:.1f} s (target <= 15 s)")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    shutil.rmtree(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
