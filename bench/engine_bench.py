"""The measurement engine against the raw hardware, through the product's own plan and worker.

Suites (each one plan, one bound lane worker, records written as usual):

- ``engine``: depth 2/6/12 at the research plan's dims (numa_study's models) x 224/384 images x eager and
  CUDA-graph execution: serial vs pipelined samples/s vs the ideal bound;
- ``copy``: a large batch (64 x 224^2) against a raw pinned copy loop of the same size;
- ``repeat``: the same config twice (two workers): medians must agree within 3%;
- ``d2h``: one model at 224/384/512/768: D2H bytes per batch must not change;
- ``regimes``: depth 2/6/12 (dim 256) and depth 12 (dim 768), batch 8, eager / CUDA graph /
  compile / compile reduce-overhead, with each run's regime.

Usage: ``python bench/engine_bench.py --out DIR [--suite engine,copy,repeat,d2h,regimes]``.
Prints markdown tables and writes them to ``DIR/engine_bench.md`` with date, card and torch version.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "bench"))

from gpu_quick_test import raw_copy  # noqa: E402

TRIALS = ["experiment.test.min_trials=3", "experiment.test.max_trials=10", "experiment.test.max_trial_time_s=30"]
SEED_MODELS = (
    "[{name:d2_dim256,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024},"
    "{name:d6_dim384,patch_size:32,depth:6,heads:6,dim:384,mlp_dim:1536},"
    "{name:d12_dim768,patch_size:16,depth:12,heads:12,dim:768,mlp_dim:3072}]"
)
REGIME_MODELS = (
    "[{name:d2_dim256,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024},"
    "{name:d6_dim256,patch_size:32,depth:6,heads:4,dim:256,mlp_dim:1024},"
    "{name:d12_dim256,patch_size:32,depth:12,heads:4,dim:256,mlp_dim:1024},"
    "{name:d12_dim768,patch_size:32,depth:12,heads:12,dim:768,mlp_dim:3072}]"
)
SUITES = {
    "engine": [
        "experiment=numa_study", "experiment.hardware.numa_nodes=[0]",
        f"experiment.vit_configs={SEED_MODELS}", 'experiment.test.tensor_shape="[3,224,224],[3,384,384]"',
        "experiment.test.execution=eager,cuda_graph", "experiment.test.num_samples=512", *TRIALS,
    ],
    "copy": [
        "experiment=numa_study", "experiment.hardware.numa_nodes=[0]",
        "experiment.vit_configs=[{name:d2_dim256,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024}]",
        "experiment.test.batch_size=64", "experiment.test.num_samples=2048", *TRIALS,
    ],
    "d2h": [
        "experiment=numa_study", "experiment.hardware.numa_nodes=[0]",
        "experiment.vit_configs=[{name:d2_dim256,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024}]",
        'experiment.test.tensor_shape="[3,224,224],[3,384,384],[3,512,512],[3,768,768]"',
        "experiment.test.batch_size=4", "experiment.test.num_samples=256", *TRIALS,
    ],
    "regimes": [
        "experiment=quick_test", f"experiment.vit_configs={REGIME_MODELS}",
        "experiment.test.execution=eager,cuda_graph,compile,compile_reduce_overhead",
        "experiment.test.num_samples=512", "experiment.test.timeout_s=600", *TRIALS,
    ],
}
SUITES["transfer"] = [
    "experiment=quick_test",
    "experiment.vit_configs=[{name:d2_dim256,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024}]",
    "experiment.test.tensor_shape=[3,768,768]", "experiment.test.memory_size_mb=1024",
    "experiment.test.batch_size=8,32", "experiment.test.pinned_memory=true,false",
    "experiment.test.execution=cuda_graph,eager", "experiment.test.num_samples=512", *TRIALS,
]
SUITES["telemetry"] = [
    "experiment=numa_study", "experiment.hardware.numa_nodes=[0]",
    "experiment.vit_configs=[{name:d6_dim384,patch_size:32,depth:6,heads:6,dim:384,mlp_dim:1536}]",
    "experiment.test.telemetry=off,during,separate,off,during,separate", "experiment.test.num_samples=512", *TRIALS,
]
SUITES["repeat"] = [
    "experiment=numa_study", "experiment.hardware.numa_nodes=[0]",
    "experiment.vit_configs=[{name:d6_dim384,patch_size:32,depth:6,heads:6,dim:384,mlp_dim:1536}]",
    "experiment.test.num_samples=512", *TRIALS,
]


def run_suite(name: str, out_dir: Path | None = None) -> tuple[list[dict], float]:
    from numa_ops import pipeline, results
    from numa_ops.supervise import LaneSupervisor
    from numa_ops.topology import discover

    folder_path, lanes = pipeline.prepare("", SUITES[name], discover(), folder=pipeline.folder_name(f"bench-{name}"))
    startup = 0.0
    for lane in lanes:
        outcome = LaneSupervisor(lane, folder_path, log=lambda line: print(line, flush=True)).run()
        startup += sum(outcome.startup_s)
    results.finalize(folder_path)
    if out_dir is not None:  # each suite's run folder comes back as one file
        with tarfile.open(out_dir / f"{folder_path.name}.tgz", "w:gz") as tar:
            tar.add(folder_path, arcname=folder_path.name)
    return json.loads((folder_path / "results.json").read_text()), startup


def f(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def row_name(r: dict) -> str:
    shape = r["test"]["tensor_shape"][1]
    pinned = "" if r["test"].get("pinned_memory", True) else " pageable"
    return f"{r['model']['name']} {shape}px b{r['test']['batch_size']} {r['metrics']['execution']}{pinned}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--suite", default="engine,copy,repeat,d2h,regimes")
    args = parser.parse_args()
    # run folders live outside DIR; each suite's folder comes back as DIR/<folder>.tgz
    os.environ.setdefault("NUMA_LAB_OUTPUTS", "/tmp/numa-lab-bench-outputs")
    import torch

    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    lines = [f"# engine bench {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
             f"card: {card}; torch {torch.__version__}; CUDA {torch.version.cuda}; "
             f"python {platform.python_version()}", ""]

    def out(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)
        (args.out / "engine_bench.md").write_text("\n".join(lines) + "\n")  # kept even if a later suite is cut off

    for suite in args.suite.split(","):
        records, startup = run_suite(suite, args.out)
        ok = [r for r in records if r["success"]]
        for r in records:
            if not r["success"]:
                out(f"FAILED {r['run_id']}: {r['error']}")
        out(f"\n## {suite} ({len(ok)} runs ok, worker start-up {startup:.1f} s)\n")
        if suite == "telemetry":
            out("| run | telemetry | serial/s | CI ±% | fwd ms | samples |")
            out("|---|---|---|---|---|---|")
            for r in ok:
                m = r["metrics"]
                out(f"| {row_name(r)} | {r['test']['telemetry']} | {m['serial_samples_per_s']:.0f} | "
                    f"{100 * (m['samples_per_s_ci']['rel_half_width'] or 0):.1f} | {m['forward_ms']['median']:.3f} | "
                    f"{m['telemetry']['samples']} |")
        if suite in ("engine", "regimes", "transfer"):
            out("| run | serial/s | pipelined/s | ideal/s | pipe/ideal | pipe/serial | H2D ms | fwd ms | fwd graph ms "
                "| D2H ms | launch share | regime | trials | CI ±% | compile s | break-even samples |")
            out("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            for r in sorted(ok, key=lambda r: (r["model"]["depth"], r["model"]["dim"], r["test"]["tensor_shape"][1],
                                               r["metrics"]["execution"])):
                m = r["metrics"]
                ci = m["samples_per_s_ci"]["rel_half_width"]
                out(f"| {row_name(r)} | {f(m['serial_samples_per_s'], '.0f')} | "
                    f"{f(m['pipelined_samples_per_s'], '.0f')} | "
                    f"{f(m['ideal_samples_per_s'], '.0f')} | {f(m['pipelined_vs_ideal'], '.2f')} | "
                    f"{f(m['pipelined_vs_serial'], '.2f')} | "
                    f"{f(m['h2d_ms']['median'])} | {f(m['forward_ms']['median'])} | {f(m['fwd_gpu_ms'])} | "
                    f"{f(m['d2h_ms']['median'])} | "
                    f"{f(m['launch_overhead_share'], '.2f')} | {m['regime']} | {m['trials']} | "
                    f"{f(None if ci is None else 100 * ci, '.1f')} | "
                    f"{f(m.get('compile_s'), '.1f')} | {m.get('compile_break_even_samples', '-')} |")
        elif suite == "copy":
            for r in ok:
                m = r["metrics"]
                raw = raw_copy(m["h2d_bytes_per_batch"])
                ratio = m["h2d_gbps"] / raw["h2d"]["gbps"]
                out(f"batch {r['test']['batch_size']} ({m['h2d_bytes_per_batch']} B): "
                    f"engine H2D {m['h2d_gbps']:.1f} GB/s "
                    f"(median {m['h2d_ms']['median']:.4f} ms), raw pinned copy {raw['h2d']['gbps']:.1f} GB/s "
                    f"({raw['h2d']['median_ms']:.4f} ms): ratio {ratio:.3f} (target >= 0.95)")
                out(f"engine D2H {m['d2h_bytes_per_batch']} B in {m['d2h_ms']['median']:.4f} ms; telemetry: "
                    f"util {f(m['telemetry']['gpu_util_pct_mean'], '.0f')}%, "
                    f"PCIe RX max {f(m['telemetry']['pcie_rx_mbps_max'], '.0f')} MB/s, "
                    f"power {f(m['telemetry']['power_w_mean'], '.0f')} W, "
                    f"SM {f(m['telemetry']['sm_clock_mhz_mean'], '.0f')} MHz")
        elif suite == "repeat":
            first = ok
            second, _ = run_suite("repeat")
            for a in first:
                b = next(x for x in second if x["model"]["name"] == a["model"]["name"] and x["success"])
                for key in ("serial_samples_per_s", "pipelined_samples_per_s"):
                    va, vb = a["metrics"][key], b["metrics"][key]
                    if va is None or vb is None:
                        continue
                    out(f"{a['model']['name']} {key}: {va:.1f} vs {vb:.1f} "
                        f"({100 * abs(va - vb) / statistics.mean([va, vb]):.2f}% apart; target < 3%)")
                for key in ("h2d_ms", "forward_ms", "d2h_ms"):
                    va, vb = a["metrics"][key]["median"], b["metrics"][key]["median"]
                    if va is None or vb is None:
                        continue
                    out(f"{a['model']['name']} {key} median: {va:.4f} vs {vb:.4f} "
                        f"({100 * abs(va - vb) / statistics.mean([va, vb]):.2f}% apart)")
        elif suite == "d2h":
            out("| image | H2D bytes/batch | D2H bytes/batch | D2H ms | H2D GB/s |")
            out("|---|---|---|---|---|")
            for r in sorted(ok, key=lambda r: r["test"]["tensor_shape"][1]):
                m = r["metrics"]
                out(f"| {r['test']['tensor_shape'][1]} | {m['h2d_bytes_per_batch']} | {m['d2h_bytes_per_batch']} | "
                    f"{f(m['d2h_ms']['median'], '.4f')} | {f(m['h2d_gbps'], '.1f')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
