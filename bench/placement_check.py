"""A Phase-2-style placement run on this host's GPUs, through the product's plan and lane workers.

Prints each record's placement, the binding in effect and where the pool's pages landed, then
asks for the placements a one-node host does not have and prints the product's answers.
Usage: ``python bench/placement_check.py [--gpus 0,3] [--nsys on]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpus", default="0,3")
    parser.add_argument("--nsys", default="off")
    args = parser.parse_args()
    from numa_ops import pipeline, results
    from numa_ops.config import ConfigError
    from numa_ops.supervise import LaneSupervisor
    from numa_ops.topology import PlacementError, discover

    topo = discover()
    print("topology:", json.dumps({"host": topo.host, "nodes": topo.node_ids, "distances": topo.distances,
                                   "gpus": [(g.index, g.pci_bus_id, g.numa_node) for g in topo.gpus],
                                   "notes": topo.notes}))
    base = ["experiment=numa_study", f"experiment.hardware.gpu_ids=[{args.gpus}]",
            "experiment.vit_configs=[{name:d2,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024}]",
            "experiment.test.num_samples=256", "experiment.test.max_trials=5", "experiment.test.max_trial_time_s=20",
            f"experiment.profile.nsys={args.nsys}"]
    for extra in (["experiment.hardware.numa_nodes=remote"], ["experiment.hardware.numa_nodes=[0,2,3]"]):
        try:
            pipeline.prepare("", base + extra, topo)
            print(f"{extra[0]}: accepted (unexpected on a one-node host)")
        except (PlacementError, ConfigError) as exc:
            print(f"{extra[0]}: refused: {exc}")
    folder_path, lanes = pipeline.prepare("", base + ["experiment.hardware.numa_nodes=all"], topo)
    with ThreadPoolExecutor(max_workers=len(lanes)) as pool:  # one lane per GPU, in parallel
        outcomes = list(pool.map(lambda lane: LaneSupervisor(lane, folder_path, log=print).run(), lanes))
    results.finalize(folder_path)
    print("\n| run | placement | distance | device | GPU | cpus_allowed | mems_allowed | pool pages on node "
          "| samples/s | profile |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for rec in json.loads((folder_path / "results.json").read_text()):
        m, env = rec.get("metrics") or {}, rec.get("environment") or {}
        b = env.get("binding") or {}
        print(f"| {rec['lane']} | {rec['placement']} | {rec.get('numa_distance')} | {rec.get('device')} | "
              f"{env.get('gpu_name')} {env.get('pci_bus_id')} | {b.get('cpus_allowed')} | {b.get('mems_allowed')} | "
              f"{(m.get('pool_pages') or {}).get('by_node')} | {m.get('samples_per_s') or rec.get('error')} | "
              f"{json.dumps(rec.get('profile'))} |")
    print("lanes:", [(o.lane, len(o.succeeded), len(o.failed), [round(s, 1) for s in o.startup_s]) for o in outcomes])
    nsys_dir = folder_path / "nsys"
    if nsys_dir.is_dir():
        print("nsys files:", [(p.name, p.stat().st_size) for p in nsys_dir.iterdir()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
