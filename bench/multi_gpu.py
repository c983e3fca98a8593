"""Phase 1's multi-GPU validation and a sweep's wall time on 1 GPU vs all GPUs, through the plan and
the lane supervisor (the code the Airflow operator runs), one lane per GPU in parallel.

Usage: ``python bench/multi_gpu.py [--gpus 0,1,2,3]``. Prints a table per step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

SWEEP = [
    "experiment=numa_study", "experiment.hardware.numa_nodes=[0]", "experiment.hardware.spread=true",
    "experiment.vit_configs=[{name:d2,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024},"
    "{name:d6,patch_size:32,depth:6,heads:6,dim:384,mlp_dim:1536},{name:d12,patch_size:32,depth:12,heads:12,dim:768,mlp_dim:3072}]",
    "experiment.test.batch_size=8,16,32,64", "experiment.test.execution=cuda_graph,eager",
    "experiment.test.num_samples=1024", "experiment.test.min_trials=5", "experiment.test.max_trials=5",
    "experiment.test.telemetry=off",
]


def run_plan(overrides: list[str]) -> tuple[float, list[dict], list]:
    from numa_ops import pipeline, results
    from numa_ops.topology import discover

    folder_path, lanes = pipeline.prepare("", overrides, discover())
    t0 = time.perf_counter()
    outcomes = pipeline.run_lanes(lanes, folder_path, log=lambda _: None)
    wall = time.perf_counter() - t0
    results.finalize(folder_path)
    return wall, json.loads((folder_path / "results.json").read_text()), outcomes


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpus", default="0,1,2,3")
    args = parser.parse_args()
    gpus = args.gpus

    wall, records, outcomes = run_plan(["experiment=quick_test", f"experiment.hardware.gpu_ids=[{gpus}]"])
    print(f"## Phase 1 multi-GPU validation (gpu_ids=[{gpus}]): {wall:.1f} s\n")
    print("| lane | model | success | samples/s | H2D GB/s | GPU | start | end |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(records, key=lambda r: (r["lane"], r["model"]["depth"])):
        m = r.get("metrics") or {}
        print(f"| {r['lane']} | {r['model']['name']} | {r['success']} | {m.get('samples_per_s') or r.get('error')} | "
              f"{m.get('h2d_gbps')} | {(r.get('environment') or {}).get('pci_bus_id')} | {r.get('started_at')} | {r.get('finished_at')} |")
    print("start-up per lane (s):", {o.lane: [round(s, 1) for s in o.startup_s] for o in outcomes})

    one, rec1, _ = run_plan([*SWEEP, f"experiment.hardware.gpu_ids=[{gpus.split(',')[0]}]"])
    many, rec4, outs = run_plan([*SWEEP, f"experiment.hardware.gpu_ids=[{gpus}]"])
    ok1, ok4 = sum(r["success"] for r in rec1), sum(r["success"] for r in rec4)
    print(f"\n## sweep of {len(rec1)} runs (spread): 1 GPU {one:.1f} s ({ok1} ok), {len(gpus.split(','))} GPUs "
          f"{many:.1f} s ({ok4} ok): speed-up {one / many:.2f}x (target >= 3.5x)")
    print("runs per lane:", {o.lane: len(o.succeeded) for o in outs},
          "start-up (s):", {o.lane: [round(s, 1) for s in o.startup_s] for o in outs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
