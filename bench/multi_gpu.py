"""Phase 1's multi-GPU validation, a sweep's wall time on 1 GPU vs all GPUs, and multi-GPU patterns
timed together, through the plan and the lane supervisor (the code the Airflow operator runs), one
lane per GPU in parallel.

Usage: ``python bench/multi_gpu.py [--gpus 0,1,2,3] [--steps validation,sweep,patterns] [--samples N] [--trials N]
[--out DIR]`` (``--samples``/``--trials``: the sweep's num_samples and trials per run, 1536 and 5 by default).
Prints a table per step; with ``--out`` the run folders are tarred there. The sweep step prints the speed-up of
all GPUs over one, each lane's end time (shared-out runs go longest first, so the GPUs end together) and the
estimate's wall times beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

SWEEP = [
    "experiment=numa_study", "experiment.hardware.numa_nodes=[0]", "experiment.hardware.spread=true",
    "experiment.vit_configs=[{name:d2,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024},"
    "{name:d6,patch_size:32,depth:6,heads:6,dim:384,mlp_dim:1536},{name:d12,patch_size:32,depth:12,heads:12,dim:768,mlp_dim:3072}]",
    "experiment.test.batch_size=8,16,32,64", "experiment.test.execution=cuda_graph,eager",
    'experiment.test.tensor_shape="[3,224,224],[3,384,384]"',
    "experiment.test.telemetry=off", "experiment.test.repeats=1",  # 48 runs, each once
]

# contention: each GPU alone, then pairs and all four at once (a transfer-heavy and a launch-bound case)
PATTERNS = {
    "transfer-heavy (768px, batch 16, pageable, cuda_graph)": [
        "experiment=quick_test",
        "experiment.vit_configs=[{name:d2,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024}]",
        'experiment.test.tensor_shape=[3,768,768]', "experiment.test.batch_size=16",
        "experiment.test.pinned_memory=false",
        "experiment.test.execution=cuda_graph", "experiment.test.memory_size_mb=512",
    ],
    "pinned transfer-heavy (768px, batch 16, pinned, cuda_graph)": [
        "experiment=quick_test",
        "experiment.vit_configs=[{name:d2,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024}]",
        'experiment.test.tensor_shape=[3,768,768]', "experiment.test.batch_size=16",
        "experiment.test.execution=cuda_graph", "experiment.test.memory_size_mb=512",
    ],
    "launch-bound (quick_test medium, eager)": [
        "experiment=quick_test",
        "experiment.vit_configs=[{name:medium,patch_size:32,depth:6,heads:6,dim:384,mlp_dim:1536}]",
    ],
}
PATTERN_COMMON = ["experiment.test.num_samples=1024", "experiment.test.min_trials=6", "experiment.test.max_trials=6",
                  "experiment.test.telemetry=off"]


FOLDERS: list[Path] = []
STARTED: dict[Path, float] = {}  # each plan's folder -> when its lanes were started (epoch seconds)


def run_plan(overrides: list[str]) -> tuple[float, list[dict], list, dict]:
    from numa_ops import pipeline, results
    from numa_ops.topology import discover

    folder_path, lanes = pipeline.prepare("", overrides, discover())
    FOLDERS.append(folder_path)
    STARTED[folder_path] = time.time()
    t0 = time.perf_counter()
    outcomes = pipeline.run_lanes(lanes, folder_path, log=lambda _: None)
    wall = time.perf_counter() - t0
    summary = results.finalize(folder_path)
    return wall, json.loads((folder_path / "results.json").read_text()), outcomes, summary


def patterns(gpus: str) -> None:
    ids = gpus.split(",")
    sets = [f"[{g}]" for g in ids] + [f"[{ids[0]},{ids[1]}]", f"[{gpus}]"] if len(ids) > 1 else [f"[{ids[0]}]"]
    for title, overrides in PATTERNS.items():
        wall, records, _, summary = run_plan([*overrides, *PATTERN_COMMON,
                                              f'experiment.hardware.gpu_ids="{",".join(sets)}"'])
        alone = {r["gpu_id"]: r["metrics"]["samples_per_s"] for r in records
                 if r["success"] and not r.get("group_id")}
        print(f"\n## multi-GPU patterns, {title}: {wall:.1f} s, "
              f"{sum(r['success'] for r in records)}/{len(records)} ok\n")
        print("alone (samples/s):", {g: round(v, 1) for g, v in sorted(alone.items())})
        print("\n| GPUs | per GPU samples/s | vs alone | aggregate | vs sum alone "
              "| start skew ms | overlap s | complete |")
        print("|---|---|---|---|---|---|---|---|")
        for g in summary["groups"]:
            per = {int(k): v for k, v in g["samples_per_s"].items()}
            ratio = {k: round(v / alone[k], 3) for k, v in per.items() if k in alone}
            base = sum(alone.get(k, 0) for k in per)
            agg = g["aggregate_samples_per_s"]
            print(f"| {g['gpus']} | { {k: round(v, 1) for k, v in per.items()} } | {ratio} | {agg and round(agg, 1)} | "
                  f"{round(agg / base, 3) if agg and base else None} | "
                  f"{g['start_skew_s'] and round(g['start_skew_s'] * 1e3, 2)} | "
                  f"{g['overlap_s'] and round(g['overlap_s'], 2)} | "
                  f"{g['complete']} |")
        h2d = {r["gpu_id"] if not r.get("group_id") else f"{r['gpu_id']}@{r['group_id'].split('gpus')[-1]}":
               round(r["metrics"]["h2d_gbps"], 1) for r in records if r["success"] and r["metrics"].get("h2d_gbps")}
        print("H2D GB/s (gpu@pattern):", h2d)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpus", default="0,1,2,3")
    parser.add_argument("--steps", default="validation,sweep,patterns")
    parser.add_argument("--samples", type=int, default=1536, help="the sweep's num_samples")
    parser.add_argument("--trials", type=int, default=5, help="the sweep's trials per run (min and max)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    SWEEP.extend([f"experiment.test.num_samples={args.samples}", f"experiment.test.min_trials={args.trials}",
                  f"experiment.test.max_trials={args.trials}"])
    gpus, steps = args.gpus, args.steps.split(",")
    for step in steps:  # each step's run folders are saved as soon as it ends
        {"validation": validation, "sweep": sweep, "patterns": patterns}[step](gpus)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            with tarfile.open(args.out / f"multi_gpu_{step}.tar.gz", "w:gz") as tar:
                for folder in FOLDERS:
                    tar.add(folder, arcname=folder.name, filter=lambda t: None if "/lanes/" in t.name else t)
            FOLDERS.clear()
        sys.stdout.flush()
    return 0


def validation(gpus: str) -> None:
    wall, records, outcomes, _ = run_plan(["experiment=quick_test", f"experiment.hardware.gpu_ids=[{gpus}]"])
    print(f"## Phase 1 multi-GPU validation (gpu_ids=[{gpus}]): {wall:.1f} s\n")
    print("| lane | model | success | samples/s | H2D GB/s | GPU | start | end |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(records, key=lambda r: (r["lane"], r["model"]["depth"])):
        m = r.get("metrics") or {}
        print(f"| {r['lane']} | {r['model']['name']} | {r['success']} | {m.get('samples_per_s') or r.get('error')} | "
              f"{m.get('h2d_gbps')} | {(r.get('environment') or {}).get('pci_bus_id')} | "
              f"{r.get('started_at')} | {r.get('finished_at')} |")
    print("start-up per lane (s):", {o.lane: [round(s, 1) for s in o.startup_s] for o in outcomes})


def lane_ends(records: list[dict]) -> dict[str, float]:
    """Each lane's last run's end, in seconds after the plan's lanes were started."""
    from datetime import datetime

    t0 = STARTED[FOLDERS[-1]]
    ends: dict[str, float] = {}
    for r in records:
        if r.get("finished_at"):
            end = datetime.fromisoformat(r["finished_at"]).timestamp() - t0
            ends[r["lane"]] = max(ends.get(r["lane"], 0.0), end)
    return dict(sorted(ends.items()))


def sweep_estimate(gpu_ids: str) -> float:
    """The estimate's wall time for the sweep on ``gpu_ids`` (cost model), planned without writing anything."""
    from numa_ops import estimate
    from numa_ops.config import load_experiment, split_experiment
    from numa_ops.plan import build_plan
    from numa_ops.topology import discover

    topo = discover()
    name, rest = split_experiment([*SWEEP, f"experiment.hardware.gpu_ids=[{gpu_ids}]"])
    lanes = build_plan("estimate", {"main": load_experiment(name, rest)}, topo, run_seconds=estimate.model_run_seconds)
    return estimate.estimate_plan(lanes, len(lanes), estimate.gpu_names_of(topo)).wall_s


def sweep(gpus: str) -> None:
    first, n = gpus.split(",")[0], len(gpus.split(","))
    est1, est4 = sweep_estimate(first), sweep_estimate(gpus)
    one, rec1, _, _ = run_plan([*SWEEP, f"experiment.hardware.gpu_ids=[{first}]"])
    many, rec4, outs, _ = run_plan([*SWEEP, f"experiment.hardware.gpu_ids=[{gpus}]"])
    ends = lane_ends(rec4)
    ok1, ok4 = sum(r["success"] for r in rec1), sum(r["success"] for r in rec4)
    print(f"\n## sweep of {len(rec1)} runs (spread, longest first): 1 GPU {one:.1f} s ({ok1} ok), {n} GPUs "
          f"{many:.1f} s ({ok4} ok): speed-up {one / many:.2f}x (target >= 3.5x)")
    print(f"estimate (cost model): 1 GPU {est1:.1f} s, {n} GPUs {est4:.1f} s")
    print("lane end (s after start):", {lane: round(end, 1) for lane, end in ends.items()},
          f"spread {max(ends.values()) - min(ends.values()):.1f} s" if ends else "")
    print("runs per lane:", {o.lane: len(o.succeeded) for o in outs},
          "start-up (s):", {o.lane: [round(s, 1) for s in o.startup_s] for o in outs},
          "lane wall (s):", {o.lane: round(o.wall_s, 1) for o in outs})

if __name__ == "__main__":
    sys.exit(main())
