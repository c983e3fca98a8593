"""Phase 1 quick_test on this host's GPU, next to a raw pinned copy of the same size.

Runs the product's own path (plan -> bound lane worker -> run records) without Airflow, then
times ``torch`` pinned H2D/D2H copies of one batch with CUDA events in a fresh process, and
prints one table. Usage::

    python bench/gpu_quick_test.py [--out DIR] [override ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

RAW_COPY = (r"""
import json, statistics, sys, torch
nbytes = int(sys.argv[1]); reps = int(sys.argv[2])
n = nbytes // 4
host = torch.randn(n).pin_memory(); back = torch.empty(n).pin_memory()
dev = torch.empty(n, device="cuda")
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
out = {}
for name, fn in (("h2d", lambda: dev.copy_(host, non_blocking=True)), """
            r"""("d2h", lambda: back.copy_(dev, non_blocking=True))):
    for _ in range(10): fn()
    torch.cuda.synchronize(); ms = []
    for _ in range(reps):
        s.record(); fn(); e.record(); e.synchronize(); ms.append(s.elapsed_time(e))
    med = statistics.median(ms); out[name] = {"median_ms": med, "gbps": nbytes / (med / 1e3) / 1e9}
print(json.dumps(out))
""")


def raw_copy(nbytes: int, reps: int = 200) -> dict:
    """Pinned H2D and D2H of ``nbytes``, CUDA events, in a fresh process bound like the lane."""
    argv = ["numactl", "--cpunodebind=0", "--membind=0", sys.executable, "-c", RAW_COPY, str(nbytes), str(reps)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
    return json.loads(subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.out:
        os.environ["NUMA_LAB_OUTPUTS"] = str(args.out / "outputs")

    from numa_ops import pipeline, results
    from numa_ops.supervise import LaneSupervisor
    from numa_ops.topology import discover

    topo = discover()
    print("topology:", json.dumps({"nodes": len(topo.nodes), "gpus": [g.name for g in topo.gpus], "notes": topo.notes}))
    overrides = ["experiment=quick_test", *(args.overrides or ["experiment.hardware.gpu_ids=[0]"])]
    folder_path, lanes = pipeline.prepare("", overrides, topo)
    outcomes = []
    for lane in lanes:
        t0 = time.perf_counter()
        outcome = LaneSupervisor(lane, folder_path).run()
        outcomes.append((lane.name, outcome, time.perf_counter() - t0))
    results.finalize(folder_path)
    records = json.loads((folder_path / "results.json").read_text())

    print("\nlane timing (a worker's start-up is paid once per lane)")
    for name, outcome, wall in outcomes:
        startup = sum(outcome.startup_s)
        print(f"  {name}: start-up {startup:.1f} s of {wall:.1f} s total ({100 * startup / wall:.0f}%), "
              f"{len(outcome.succeeded)} ok / {len(outcome.failed)} failed")

    print("\n| model | device | samples/s | H2D ms | fwd ms | D2H ms | batch ms | H2D GB/s | D2H GB/s | H2D bytes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(records, key=lambda r: r["model"]["depth"]):
        m = r.get("metrics") or {}
        if not r["success"]:
            print(f"| {r['model']['name']} | - | FAILED: {r.get('error')} |")
            continue

        def med(k: str, m: dict = m) -> str:
            v = (m.get(k) or {}).get("median")
            return "-" if v is None else f"{v:.3f}"

        def num(k: str, m: dict = m) -> str:
            return "-" if m.get(k) is None else f"{m[k]:.1f}"

        print(f"| {r['model']['name']} (d{r['model']['depth']}, dim {r['model']['dim']}) | {r['device']} "
              f"{(r.get('environment') or {}).get('gpu_name')} | {m['samples_per_s']:.0f} | {med('h2d_ms')} | "
              f"{med('forward_ms')} | {med('d2h_ms')} | {med('batch_ms')} | {num('h2d_gbps')} | {num('d2h_gbps')} | "
              f"{m['h2d_bytes_per_batch']} |")

    gpu = [r for r in records if r.get("device") == "cuda"]
    if gpu:
        nbytes = gpu[0]["metrics"]["h2d_bytes_per_batch"]
        raw = raw_copy(nbytes)
        big = raw_copy(256 * 2**20, reps=20)
        print(f"\nraw pinned copy, same size ({nbytes} B): H2D {raw['h2d']['median_ms']:.4f} ms = "
              f"{raw['h2d']['gbps']:.1f} GB/s, D2H {raw['d2h']['median_ms']:.4f} ms = {raw['d2h']['gbps']:.1f} GB/s")
        print(f"raw pinned copy, 256 MiB: H2D {big['h2d']['gbps']:.1f} GB/s, D2H {big['d2h']['gbps']:.1f} GB/s")
        lane_h2d = statistics.median(r["metrics"]["h2d_ms"]["median"] for r in gpu)
        print(f"lane H2D median {lane_h2d:.4f} ms vs raw {raw['h2d']['median_ms']:.4f} ms "
              f"(ratio {lane_h2d / raw['h2d']['median_ms']:.2f})")
    if args.out:
        with tarfile.open(args.out / "outputs.tgz", "w:gz") as tar:
            tar.add(folder_path, arcname=folder_path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
