"""Loading many run records into DuckDB and building the report: prints seconds for each step.

Usage: ``python bench/store_scale.py [--records 100000] [--folders 100]``. Synthetic records are
written under a temporary outputs folder first (not timed).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))


def synthetic(run_id: str, folder: str, rng: random.Random) -> dict:
    depth = rng.choice([2, 4, 6, 8, 12])
    rate = 20000 / depth * rng.uniform(0.9, 1.1)
    return {
        "schema": 1, "run_id": run_id, "folder": folder, "experiment": "numa_study", "study": "numa_study",
        "sweep_point": 0, "lane": f"gpu{rng.randrange(4)}-cpu0-mem0", "gpu_id": 0, "numa_node": 0, "cpu_node": 0,
        "mem_node": 0, "placement": rng.choice(["local", "remote"]), "device": "cuda",
        "model": {"name": f"d{depth}", "patch_size": 32, "depth": depth, "heads": 4, "dim": 256, "mlp_dim": 1024},
        "test": {"num_samples": 1000, "batch_size": 8, "tensor_shape": [3, 224, 224], "memory_size_mb": 1024,
                 "compile_model": False, "execution": "eager"},
        "success": True, "error": None, "duration": 2.0,
        "started_at": "2026-11-27T00:00:00+00:00", "finished_at": "2026-11-27T00:00:02+00:00",
        "metrics": {"samples_per_s": rate, "samples_per_s_ci": {"low": rate * 0.98, "high": rate * 1.02, "rel_half_width": 0.02},
                    "h2d_ms": {"median": 0.1}, "forward_ms": {"median": depth * 0.3}, "d2h_ms": {"median": 0.05},
                    "batch_ms": {"median": depth * 0.3 + 0.15}, "fwd_gpu_ms": depth * 0.1, "regime": "launch-bound",
                    "execution": "eager", "parameters": depth * 1_000_000, "flops_per_sample": depth * 10**8,
                    "trial_samples_per_s": {"serial": [rate] * 3, "pipelined": [rate] * 3}},
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--folders", type=int, default=100)
    args = parser.parse_args()
    import os

    base = Path(tempfile.mkdtemp(prefix="numa-lab-scale-"))
    os.environ["NUMA_LAB_OUTPUTS"] = str(base)
    from numa_ops import report, results, store

    rng = random.Random(0)
    per = args.records // args.folders
    t0 = time.perf_counter()
    for f in range(args.folders):
        name = f"scale_{f:04d}"
        for i in range(per):
            rid = f"{name}.r{i:06d}"
            results.write_json_atomic(base / name / "runs" / f"{rid}.json", synthetic(rid, name, rng))
    print(f"wrote {args.folders * per} records in {time.perf_counter() - t0:.1f} s (not part of the targets)")

    t0 = time.perf_counter()
    counts = store.load(store.run_folders())
    load_s = time.perf_counter() - t0
    print(f"load: {load_s:.1f} s for {counts['inserted']} new rows (target <= 10 s)")
    t0 = time.perf_counter()
    again = store.load(store.run_folders())
    print(f"load again (nothing new): {time.perf_counter() - t0:.1f} s, {again['inserted']} new rows")
    t0 = time.perf_counter()
    report.write_report(base / "report", "scale")
    print(f"report: {time.perf_counter() - t0:.1f} s (target <= 15 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
