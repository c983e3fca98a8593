"""Paired A/A against separate-process A/A, and a known difference measured both ways, on one GPU.

Eight configurations (a launch-bound depth-2 ViT and a depth-12 patch-16 ViT, eager and CUDA graph, pinned and
pageable host pool; batch 8 of 224 px). Every worker is the product's own
(``numactl --cpunodebind=0 --membind=0 python -m numa_ops.worker --runs RUNS.json --folder-path DIR``):

- ``paired``: one worker measures each configuration as a paired run with both memory arms on node 0 (A/A: the
  true ratio is 1), and with ``--known`` also pinned against pageable host pools as the two arms (a known
  difference) for the CUDA-graph configurations;
- ``separate``: ``--processes`` workers, one after another, each measuring the eight configurations as ordinary
  runs (``placement=process``): the between-process comparison numa-lab falls back to.

``summarize`` prints (and with ``--markdown`` writes) one table: per configuration the paired A/A interval (plain
and control-adjusted), its blocks and GPU seconds, and the separate processes' spread, the interval of a 3 v 3
comparison and its GPU seconds; then the known difference both ways.

Usage::

    python bench/paired_aa.py paired --out DIR [--only light|heavy] [--known] [--max-s 120] [--cpu-smoke]
    python bench/paired_aa.py separate --out DIR --processes 3 [--cpu-smoke]
    python bench/paired_aa.py summarize DIR [DIR ...] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from dataclasses import replace  # noqa: E402

from numa_ops.config import ProfileConfig, TestConfig, VitConfig  # noqa: E402
from numa_ops.specs import Arm, RunSpec, runs_to_json  # noqa: E402

MODELS = {
    "light_d2": VitConfig(name="light_d2", patch_size=32, depth=2, heads=4, dim=256, mlp_dim=1024),
    "heavy_d12": VitConfig(name="heavy_d12", patch_size=16, depth=12, heads=12, dim=768, mlp_dim=3072),
}
SMOKE_MODELS = {
    "light_d2": VitConfig(name="light_d2", patch_size=16, depth=1, heads=2, dim=32, mlp_dim=64, num_classes=10),
    "heavy_d12": VitConfig(name="heavy_d12", patch_size=16, depth=2, heads=2, dim=64, mlp_dim=128, num_classes=10),
}
CONFIGS = [(m, e, p) for m in ("light_d2", "heavy_d12") for e in ("eager", "cuda_graph") for p in (True, False)]
TEST = {"batch_size": 8, "tensor_shape": [3, 224, 224], "num_samples": 400, "memory_size_mb": 256,
        "warmup_batches": 5, "telemetry": "off"}
SMOKE_TEST = {"batch_size": 8, "tensor_shape": [3, 32, 32], "num_samples": 32, "memory_size_mb": 4,
              "warmup_batches": 1, "telemetry": "off", "min_trial_s": 0.02}


def key(model: str, execution: str, pinned: bool) -> str:
    return f"{model}.{execution}.{'pinned' if pinned else 'pageable'}"


def _test(execution: str, pinned: bool, smoke: bool, **extra: Any) -> TestConfig:
    base = SMOKE_TEST if smoke else TEST
    return TestConfig(**{**base, "execution": "eager" if smoke else execution, "pinned_memory": pinned, **extra})


def _spec(folder: str, run_id: str, model: VitConfig, test: TestConfig, gpu: int | None, repeat: int = 0,
          arms: tuple[Arm, ...] = ()) -> RunSpec:
    return RunSpec(
        run_id=run_id, folder=folder, experiment="paired_aa", model=model, test=test, profile=ProfileConfig(),
        share_gpu=False, gpu_id=gpu, cpu_node=0, mem_node=0, placement="cpu" if gpu is None else "local",
        numa_distance=None if gpu is None else 10, lane="bench", study="aa", repeat=repeat,
        placement_mode="paired" if arms else "process", pool_node=0, paired="memory" if arms else None, arms=arms,
    )


def paired_specs(args: argparse.Namespace, gpu: int | None) -> list[RunSpec]:
    models = SMOKE_MODELS if args.cpu_smoke else MODELS
    extra = {"paired_max_s": args.max_s, "paired_target": args.target, "min_trial_s": args.min_trial_s}
    if args.cpu_smoke:
        extra.update(min_trial_s=0.02, paired_max_s=min(args.max_s, 20))
    specs = []
    for model, execution, pinned in CONFIGS:
        if args.only and not model.startswith(args.only):
            continue
        if args.aa is not None and key(model, execution, pinned) not in args.aa:
            continue
        arms = (Arm(0, pinned and gpu is not None, "local", 10), Arm(0, pinned and gpu is not None, "local", 10))
        specs.append(_spec("paired", f"aa.{key(model, execution, pinned)}", models[model],
                           _test(execution, pinned, args.cpu_smoke, **extra), gpu, arms=arms))
    if args.thread:  # thread arms, both on node 0: an A/A of the launching thread's move between held cores
        for model, execution in (("light_d2", "cuda_graph"),):
            arms = (Arm(0, gpu is not None, "local", 10), Arm(0, gpu is not None, "local", 10))
            spec = _spec("paired", f"thread.{key(model, execution, True)}", models[model],
                         _test(execution, True, args.cpu_smoke, **extra), gpu, arms=arms)
            specs.append(replace(spec, paired="thread"))
    if args.known:
        for model in ("light_d2", "heavy_d12"):
            if args.only and not model.startswith(args.only):
                continue
            arms = (Arm(0, gpu is not None, "local", 10), Arm(0, False, "local", 10))
            specs.append(_spec("paired", f"known.{model}.cuda_graph.pinned-v-pageable", models[model],
                               _test("cuda_graph", True, args.cpu_smoke, **extra), gpu, arms=arms))
    return specs


def separate_specs(args: argparse.Namespace, gpu: int | None, proc: int) -> list[RunSpec]:
    models = SMOKE_MODELS if args.cpu_smoke else MODELS
    budget = {"max_trials": args.max_trials}
    return [_spec(f"p{proc:02d}", f"sep.p{proc:02d}.{key(m, e, p)}", models[m], _test(e, p, args.cpu_smoke, **budget),
                  gpu, repeat=proc) for m, e, p in CONFIGS if not args.only or m.startswith(args.only)]


def run_worker(specs: list[RunSpec], folder: Path, gpu: int | None) -> float:
    """One bound worker measuring ``specs`` into ``folder``; returns its wall time."""
    folder.mkdir(parents=True, exist_ok=True)
    runs = folder / "runs.json"
    runs.write_text(json.dumps(runs_to_json(specs)))
    argv = [sys.executable, "-m", "numa_ops.worker", "--runs", str(runs), "--folder-path", str(folder)]
    if shutil.which("numactl"):
        argv = ["numactl", "--cpunodebind=0", "--membind=0", *argv]
    path = os.pathsep.join(filter(None, [str(ROOT / "plugins"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1",
           "CUDA_VISIBLE_DEVICES": "" if gpu is None else str(gpu), "NUMA_LAB_OUTPUTS": str(folder.parent)}
    t0 = time.perf_counter()
    with (folder / "worker.log").open("w") as log:
        subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    return time.perf_counter() - t0


def _gpu() -> int | None:
    import torch

    return 0 if torch.cuda.is_available() else None


def cmd_paired(args: argparse.Namespace) -> None:
    gpu = _gpu()
    wall = run_worker(paired_specs(args, gpu), Path(args.out) / "paired", gpu)
    print(f"paired worker: {wall:.0f} s", flush=True)


def cmd_separate(args: argparse.Namespace) -> None:
    gpu = _gpu()
    for proc in range(args.processes):
        wall = run_worker(separate_specs(args, gpu, proc), Path(args.out) / f"p{proc:02d}", gpu)
        print(f"separate process {proc}: {wall:.0f} s", flush=True)


# -- summary ----------------------------------------------------------------------------------
def _records(dirs: list[str]) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for d in dirs for p in sorted(Path(d).glob("**/runs/*.json"))]


def _config(rec: dict[str, Any]) -> str:
    t = rec["test"]
    return key(rec["model"]["name"], t["execution"], t["pinned_memory"])


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x * 100:+.1f}%"


def _ratio_text(c: dict[str, Any]) -> str:
    """``ratio - 1 [low - 1, high - 1] (±half-width)`` of a comparison (n/a where it has no interval)."""
    def rel(x: float | None) -> float | None:
        return None if x is None else x - 1

    hw = c.get("half_width")
    return (f"{_pct(rel(c.get('ratio')))} [{_pct(rel(c.get('low')))}, {_pct(rel(c.get('high')))}]"
            + (f" (±{hw * 100:.1f}%)" if hw is not None else ""))


def _holds(c: dict[str, Any], value: float = 1.0) -> str:
    if c.get("low") is None:
        return "n/a"
    return "yes" if c["low"] <= value <= c["high"] else "NO"


def _between(values: list[float], per_arm: int) -> dict[str, float]:
    """Spread of ln headlines over processes and the half-width of a per_arm v per_arm comparison."""
    logs = np.log(values)
    sd = float(np.std(logs, ddof=1))
    df = 2 * per_arm - 2
    return {"sd": sd, "half_width": math.expm1(stats.t.ppf(0.975, df) * sd * math.sqrt(2 / per_arm)),
            "mde": math.expm1((stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * sd * math.sqrt(2 / per_arm))}


def summarize(dirs: list[str]) -> str:
    records = [r for r in _records(dirs) if r.get("success")]
    failed = [r for r in _records(dirs) if not r.get("success")]
    paired = {_config(r): r for r in records if r["run_id"].startswith("aa.")}
    known = [r for r in records if r["run_id"].startswith("known.")]
    separate: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["run_id"].startswith("sep."):
            separate.setdefault(_config(r), []).append(r)
    gpu = next((r["environment"].get("gpu_name") or r["environment"].get("gpu") for r in records
                if r.get("environment")), None)
    lines = [f"device: {records[0]['metrics']['device'] if records else '?'}; GPU: {gpu}; records: {len(records)}"
             f" ({len(failed)} failed)", "",
             "| configuration | paired A/A ratio-1 [95% interval] | adjusted [95%] | blocks | paired GPU s | holds 0 "
             "| separate: processes | between-process sd | 3 v 3 half-width | 3 v 3 GPU s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for cfg in [key(*c) for c in CONFIGS]:
        row = [cfg]
        rec = paired.get(cfg)
        if rec:
            p = rec["metrics"]["paired"]
            c = p["comparisons"][0]
            adj = c.get("adjusted") or {}
            row += [_ratio_text(c), _ratio_text(adj) if adj else "n/a",
                    str(c["blocks"]), f"{p['trials_s']:.0f} ({p['stop_reason']})", _holds(c)]
        else:
            row += ["-"] * 5
        sep = separate.get(cfg, [])
        if len(sep) >= 2:
            b = _between([r["metrics"]["samples_per_s"] for r in sep], 3)
            gpu_s = 6 * float(np.mean([r["metrics"]["trials_s"] for r in sep]))
            row += [str(len(sep)), f"{b['sd'] * 100:.1f}%", f"±{b['half_width'] * 100:.1f}%", f"{gpu_s:.0f}"]
        else:
            row += [str(len(sep)), "-", "-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    if known:
        lines += ["", "Known difference: pageable against pinned host pool (ratio - 1 of samples/s)", "",
                  "| configuration | paired [95% interval] | paired GPU s "
                  "| separate processes [95% Welch interval] | agree |",
                  "|---|---|---|---|---|"]
        for rec in known:
            c, p = rec["metrics"]["paired"]["comparisons"][0], rec["metrics"]["paired"]
            model = rec["model"]["name"]
            pin = [math.log(r["metrics"]["samples_per_s"]) for r in separate.get(key(model, "cuda_graph", True), [])]
            pag = [math.log(r["metrics"]["samples_per_s"]) for r in separate.get(key(model, "cuda_graph", False), [])]
            sep_text, agree = "-", "-"
            if len(pin) >= 2 and len(pag) >= 2:
                d = float(np.mean(pag) - np.mean(pin))
                va, vb = np.var(pin, ddof=1) / len(pin), np.var(pag, ddof=1) / len(pag)
                df = (va + vb) ** 2 / (va**2 / (len(pin) - 1) + vb**2 / (len(pag) - 1))
                h = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
                lo, hi = math.expm1(d - h), math.expm1(d + h)
                sep_text = f"{_pct(math.expm1(d))} [{_pct(lo)}, {_pct(hi)}]"
                if c.get("low") is not None:
                    agree = "yes" if max(lo, c["low"] - 1) <= min(hi, c["high"] - 1) else "NO"
            lines.append(f"| {model}.cuda_graph | {_ratio_text(c)} | {p['trials_s']:.0f} | {sep_text} | {agree} |")
    for r in failed:
        lines.append(f"- FAILED {r['run_id']}: {(r.get('error') or '')[:200]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/paired_aa.py")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("paired")
    p.add_argument("--out", required=True)
    p.add_argument("--only", choices=["light", "heavy"])
    p.add_argument("--known", action="store_true")
    p.add_argument("--thread", action="store_true")
    p.add_argument("--aa", nargs="*", default=None, help="configuration keys to measure as paired A/A (default: all)")
    p.add_argument("--max-s", type=float, default=120.0)
    p.add_argument("--target", type=float, default=0.02)
    p.add_argument("--min-trial-s", type=float, default=0.25)
    p.add_argument("--cpu-smoke", action="store_true")
    s = sub.add_parser("separate")
    s.add_argument("--out", required=True)
    s.add_argument("--processes", type=int, default=3)
    s.add_argument("--only", choices=["light", "heavy"])
    s.add_argument("--max-trials", type=int, default=20)
    s.add_argument("--cpu-smoke", action="store_true")
    m = sub.add_parser("summarize")
    m.add_argument("dirs", nargs="+")
    m.add_argument("--markdown")
    args = parser.parse_args(argv)
    if args.cmd == "paired":
        cmd_paired(args)
    elif args.cmd == "separate":
        cmd_separate(args)
    else:
        text = summarize(args.dirs)
        print(text)
        if args.markdown:
            Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
