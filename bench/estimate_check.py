"""The plan's cost estimate against what the runs really took, and the whole research plan's estimate.

Usage:
  ``python bench/estimate_check.py [--plans quick_test,numa_study] [--gpus 0] [--out DIR]``: for each plan,
  the estimate (cost model alone: the outputs folder starts without records) then the plan measured through
  ``pipeline.run_lanes``; prints estimate vs actual (GPU s, wall s, ratio). On a host without GPUs the plans
  run on the CPU.
  ``python bench/estimate_check.py --whole-plan [--gpu-name NAME]``: every phase of ``phases.yaml`` at the
  plan's settings on a 4-GPU host (4 NUMA nodes, GPU i on node i), by the cost model; measures nothing.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

# numa_study cut to fit about a minute on one GPU: its lightest and its heavy model, one repeat, node 0
PLANS = {
    "quick_test": ["experiment=quick_test"],
    "numa_study": ["experiment=numa_study", "experiment.vit_configs=[{name:light_d2,patch_size:32,depth:2,heads:4,"
                   "dim:256,mlp_dim:1024},{name:heavy_d12,patch_size:16,depth:12,heads:12,dim:768,mlp_dim:3072}]",
                   "experiment.test.repeats=1", "experiment.hardware.numa_nodes=[0]"],
}


def four_gpu_host(gpu_name: str):
    from numa_ops.topology import Gpu, NumaNode, Topology

    nodes = [NumaNode(i, list(range(16 * i, 16 * i + 16)), 128_000) for i in range(4)]
    gpus = [Gpu(i, gpu_name, f"0000:{0x1b + 0x20 * i:02x}:00.0", i) for i in range(4)]
    distances = {i: [10 if i == j else 21 for j in range(4)] for i in range(4)}
    return Topology("plan-host", nodes, gpus, distances, gpu_source="nvml")


def whole_plan(gpu_name: str) -> None:
    from numa_ops import estimate
    from numa_ops.phases import load_phases
    from numa_ops.plan import build_plan
    from numa_ops.roles import resolve_studies

    topo = four_gpu_host(gpu_name)
    total_h = total_wall = 0.0
    print(f"## The plan's six phases on a 4-GPU host ({gpu_name}), by the cost model\n")
    print("| phase | runs | lanes | worker starts | GPU-hours | wall | max_gpu_hours |")
    print("|---|---|---|---|---|---|---|")
    for name, phase in load_phases().items():
        if phase.schedule:  # the nightly sweep is not part of the plan
            continue
        lanes = build_plan(name, resolve_studies(phase, topo).configs, topo, run_seconds=estimate.model_run_seconds)
        cost = estimate.estimate_plan(lanes, phase.max_lanes, estimate.gpu_names_of(topo))
        total_h += cost.gpu_hours
        total_wall += cost.wall_s
        print(f"| {name} | {cost.runs} | {cost.lanes} | {cost.worker_starts} | {cost.gpu_hours:.2f} | "
              f"{cost.wall_s / 3600:.2f} h | {phase.max_gpu_hours} |")
    print(f"\nall six phases: {total_h:.1f} GPU-hours, {total_wall / 3600:.1f} h wall "
          "(the research plan's own estimate: 30-52 GPU-hours)")


def check(name: str, overrides: list[str], gpus: str | None, out: Path | None) -> dict:
    from numa_ops import estimate, pipeline, results
    from numa_ops.topology import discover

    topo = discover()
    if gpus is not None and topo.gpus:
        overrides = [*overrides, f"experiment.hardware.gpu_ids=[{gpus}]"]
    folder_path, lanes = pipeline.prepare("", overrides, topo)
    cost = estimate.estimate_plan(lanes, lanes[0].max_workers, estimate.gpu_names_of(topo),
                                  estimate.read_past_records())
    t0 = time.perf_counter()
    pipeline.run_lanes(lanes, folder_path, lanes[0].max_workers, log=lambda _: None)
    wall = time.perf_counter() - t0
    records = [r for r in (results.read_record(p) for p in sorted((folder_path / "runs").glob("*.json"))) if r]
    gpu_actual = sum(r.duration or 0.0 for r in records)
    startup = sum(max((r.worker_startup_s or 0.0 for r in records if r.lane == lane.name), default=0.0)
                  for lane in lanes)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out / f"estimate_{name}.tar.gz", "w:gz") as tar:
            tar.add(folder_path, arcname=folder_path.name, filter=lambda t: None if "/lanes/" in t.name else t)
    device = topo.gpus[0].name if topo.gpus else "CPU"
    return {"plan": name, "device": device, "runs": cost.runs, "basis": cost.basis,
            "gpu_est": cost.gpu_s, "gpu_act": gpu_actual, "start_est": cost.startup_s, "start_act": startup,
            "wall_est": cost.wall_s, "wall_act": wall}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plans", default="quick_test,numa_study")
    parser.add_argument("--gpus", default=None, help="GPU ids for the plans, e.g. 0 (default: the plan's own)")
    parser.add_argument("--whole-plan", action="store_true")
    parser.add_argument("--gpu-name", default="NVIDIA H100 80GB HBM3")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.whole_plan:
        whole_plan(args.gpu_name)
        return 0
    rows = [check(name, PLANS[name], args.gpus, args.out) for name in args.plans.split(",")]
    print("\n| plan | device | runs | GPU s est | GPU s actual | ratio | start-up est | actual | wall s est | "
          "wall s actual | ratio | basis |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['plan']} | {r['device']} | {r['runs']} | {r['gpu_est']:.1f} | {r['gpu_act']:.1f} | "
              f"{r['gpu_act'] / r['gpu_est']:.2f} | {r['start_est']:.1f} | {r['start_act']:.1f} | "
              f"{r['wall_est']:.1f} | "
              f"{r['wall_act']:.1f} | {r['wall_act'] / r['wall_est']:.2f} | {r['basis']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
