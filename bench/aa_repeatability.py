"""A/A repeatability of the engine: six configurations, N separate worker processes per version, interleaved.

The acceptance bench of issue 13. Each worker process is the product's own worker
(``numactl --cpunodebind=0 --membind=0 python -m numa_ops.worker --runs RUNS.json --folder-path DIR``) and
measures the six configurations one after another, as ``python -m numa_ops run`` does. Two versions of
the product are measured on the same warm machine in the same call, process by process in ABBA order
(old, new, new, old, old, new, ...), so drift hits both:

- ``new``: this checkout's ``plugins/``;
- ``old``: the product at d9f5dfe, extracted with ``git archive d9f5dfe plugins | tar -x -C .bench_old``
  (done here when ``.bench_old/plugins`` is missing and git can).

Usage::

    python bench/aa_repeatability.py run --out DIR --processes 6 [--versions old,new] [--budget-s 420]
    python bench/aa_repeatability.py run --out DIR --processes 2 --cpu-smoke      # CPU, tiny models
    python bench/aa_repeatability.py summarize --records DIR_or_records.tar.gz [--markdown FILE]

``run`` writes each process's folder (``runs.json``, ``runs/<run_id>.json``, ``worker.log``) under
``DIR/<version>/pNN/``, ``DIR/manifest.json``, and packs them all into ``DIR/records.tar.gz``.
``summarize`` reads them back: per configuration and version the process headlines, their spread, the 95%
interval over processes, the within-run interval the records claim, an A/A comparison of the processes
split into two interleaved arms (with its MDE), and for records that carry them the CPU-control (CUPED)
adjustment, pipelined vs ideal, the binding stage and the copy rates.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
OLD_COMMIT = "d9f5dfe"
EVENT_PREFIX = "@@numa_lab "
RUN_ID = re.compile(r"^aa\.(?P<version>[A-Za-z0-9_-]+)\.p(?P<proc>\d+)\.(?P<config>.+)$")

MODELS = {
    "light_d2": {"name": "light_d2", "patch_size": 32, "depth": 2, "heads": 4, "dim": 256, "mlp_dim": 1024,
                 "num_classes": 1000},
    "heavy_d12": {"name": "heavy_d12", "patch_size": 16, "depth": 12, "heads": 12, "dim": 768, "mlp_dim": 3072,
                  "num_classes": 1000},
}
SMOKE_MODELS = {  # CPU smoke test: the same names, tiny models
    "light_d2": {"name": "light_d2", "patch_size": 16, "depth": 1, "heads": 2, "dim": 32, "mlp_dim": 64,
                 "num_classes": 10},
    "heavy_d12": {"name": "heavy_d12", "patch_size": 16, "depth": 2, "heads": 2, "dim": 64, "mlp_dim": 128,
                  "num_classes": 10},
}
# (model, execution, pinned): the six configurations, in the order each worker measures them
CONFIGS = [
    ("light_d2", "eager", True),
    ("light_d2", "eager", False),
    ("light_d2", "cuda_graph", True),
    ("light_d2", "cuda_graph", False),
    ("heavy_d12", "eager", True),
    ("heavy_d12", "cuda_graph", True),
]
TEST = {"batch_size": 8, "tensor_shape": [3, 224, 224], "num_samples": 400, "memory_size_mb": 256,
        "warmup_batches": 5, "telemetry": "off"}
SMOKE_TEST = {"batch_size": 8, "tensor_shape": [3, 32, 32], "num_samples": 32, "memory_size_mb": 4,
              "warmup_batches": 1, "telemetry": "off"}
# what each version needs set beyond the common settings: the "before" of issue 13 ran up to 10 trials
VERSION_TEST = {"old": {"max_trials": 10}, "new": {"max_trials": 10}}  # the same trial budget for both
SMOKE_VERSION_TEST = {"old": {"max_trials": 10}, "new": {"min_trial_s": 0.02}}
# TestConfig defaults of each version, used only where its config module cannot be imported
# (tests/bench/test_aa_repeatability.py checks them against the versions' own TestConfig)
TEST_DEFAULTS = {
    "old": {"compile_model": False, "timeout_s": 600, "warmup_batches": 3, "pinned_memory": True,
            "execution": "eager", "d2h_mode": "outputs", "telemetry": "separate", "ci_target": 0.02,
            "min_trials": 3, "max_trials": 20, "max_trial_time_s": 120.0},
    "new": {"compile_model": False, "timeout_s": 600, "warmup_batches": 3, "pinned_memory": True,
            "execution": "eager", "d2h_mode": "outputs", "telemetry": "separate", "ci_target": 0.02,
            "min_trials": 6, "max_trials": 20, "max_trial_time_s": 120.0, "min_trial_s": 0.5, "repeats": 1,
            "intra_op_threads": None},
}
PROFILE = {"nsys": "off", "retention": "all", "min_free_gb": 10.0}
DUMP_TESTS = (
    "import json, sys\n"
    "from numa_ops.config import TestConfig\n"
    "print(json.dumps([TestConfig(**t).model_dump() for t in json.loads(sys.stdin.read())]))\n"
)
WHERE = "import numa_ops, sys; print(numa_ops.__file__)"


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def config_key(model: str, execution: str, pinned: bool) -> str:
    return f"{model}.{execution}.{'pinned' if pinned else 'pageable'}"


CONFIG_KEYS = [config_key(*c) for c in CONFIGS]


def abba_order(versions: list[str], processes: int, first: int = 0) -> list[tuple[str, int]]:
    """(version, process index) in the order they run: pairs alternate AB, BA, AB, ... (ABBA).

    ``first``: the index of the first pair (a second call goes on where a first one stopped).
    """
    order = []
    for k in range(first, first + processes):
        pair = versions if k % 2 == 0 else versions[::-1]
        order.extend((v, k) for v in pair)
    return order


def worker_env(plugins: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: the version's plugins in front of an existing PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugins), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.update(CUDA_VISIBLE_DEVICES="0", CUDA_DEVICE_ORDER="PCI_BUS_ID", PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def old_plugins(path: str | None) -> Path:
    """The old version's plugins folder; extracted from git at d9f5dfe into .bench_old/ when missing."""
    if path:
        return Path(path).resolve()
    target = ROOT / ".bench_old" / "plugins"
    if not (target / "numa_ops" / "worker" / "__main__.py").exists():
        if not (ROOT / ".git").exists() or shutil.which("git") is None:
            raise SystemExit(f"{target} is missing and git cannot extract it: run "
                             f"`git archive {OLD_COMMIT} plugins | tar -x -C .bench_old` where the history is")
        (ROOT / ".bench_old").mkdir(exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT, "plugins"], check=True,
                                 capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(ROOT / ".bench_old", filter="data")
        say(f"extracted the product at {OLD_COMMIT} into {target}")
    return target


def test_dicts(version: str, plugins: Path, smoke: bool) -> tuple[list[dict[str, Any]], str]:
    """The full test section of each configuration, as the version's own TestConfig dumps it.

    Falls back to the version's defaults written out here where its config module cannot be imported.
    """
    base = SMOKE_TEST if smoke else TEST
    extra = (SMOKE_VERSION_TEST if smoke else VERSION_TEST).get(version, {})
    wanted = [{**base, **extra, "execution": execution if not smoke else "eager", "pinned_memory": pinned}
              for _, execution, pinned in CONFIGS]
    proc = subprocess.run([sys.executable, "-c", DUMP_TESTS], input=json.dumps(wanted), capture_output=True,
                          text=True, env=worker_env(plugins), timeout=120)
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1]), "the version's TestConfig"
    why = (proc.stderr.strip().splitlines() or ["?"])[-1]
    if version not in TEST_DEFAULTS:
        raise SystemExit(f"{version}: its TestConfig cannot be imported ({why}) and no defaults are written here")
    return [{**TEST_DEFAULTS[version], **t} for t in wanted], f"defaults written in the bench ({why})"


def build_specs(version: str, proc: int, tests: list[dict[str, Any]], gpu: int | None, smoke: bool) -> list[dict]:
    """One worker's run specs, written by hand so both versions' workers accept them (plan._spec's keys)."""
    folder = f"aa.{version}.p{proc:02d}"
    models = SMOKE_MODELS if smoke else MODELS
    specs = []
    for i, ((model, execution, pinned), test) in enumerate(zip(CONFIGS, tests, strict=True)):
        spec = {
            "folder": folder,
            "study": "aa",
            "experiment": "aa_repeatability",
            "sweep_point": i,
            "model": dict(models[model]),
            "test": dict(test),
            "profile": dict(PROFILE),
            "hardware": {"share_gpu": False},
            "gpu_id": gpu,
            "cpu_node": 0,
            "mem_node": 0,
            "placement": "cpu" if gpu is None else "local",
            "numa_distance": None if gpu is None else 10,
            "lane": f"{'cpu' if gpu is None else f'gpu{gpu}'}-cpu0-mem0",
            "run_id": f"{folder}.{config_key(model, execution, pinned)}",
        }
        if version != "old":
            spec["hardware"]["placement"] = "process"
            spec.update(placement_mode="process", pool_node=0, repeat=proc, node_shared_with=[])
        specs.append(spec)
    return specs


def worker_argv(runs: Path, folder: Path) -> list[str]:
    argv = [sys.executable, "-m", "numa_ops.worker", "--runs", str(runs), "--folder-path", str(folder)]
    if shutil.which("numactl"):
        argv = ["numactl", "--cpunodebind=0", "--membind=0", *argv]
    return argv


def run_worker(argv: list[str], env: dict[str, str], cwd: Path, log: Path, timeout_s: float, tag: str,
               t_start: float) -> tuple[int | None, float, str | None]:
    """Run one worker to its end (or kill its process group at ``timeout_s``): (rc, seconds, why killed)."""
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, start_new_session=True)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                fh.write(line)
                fh.flush()
                if not line.startswith(EVENT_PREFIX):
                    continue
                try:
                    ev = json.loads(line[len(EVENT_PREFIX):])
                except json.JSONDecodeError:
                    continue
                now = time.perf_counter() - t_start
                if ev.get("event") == "ready":
                    say(f"[{now:6.1f}s] {tag}: ready after {ev.get('startup_s', 0):.1f} s on {ev.get('device')}")
                elif ev.get("event") == "end":
                    rate = ev.get("samples_per_s")
                    what = f"{rate:9.1f} samples/s" if isinstance(rate, int | float) else f"FAILED: {ev.get('error')}"
                    m = RUN_ID.match(str(ev.get("run_id")))
                    say(f"[{now:6.1f}s] {tag}: {m['config'] if m else ev.get('run_id'):28} {what} "
                        f"({ev.get('duration') or 0:.1f} s)")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        killed = None
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            killed = f"killed after {timeout_s:.0f} s"
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        reader.join(timeout=10)
    return proc.returncode, time.perf_counter() - t0, killed


def pack(out: Path) -> Path:
    """Every process folder and the manifest, in DIR/records.tar.gz."""
    target = out / "records.tar.gz"
    tmp = out / ".records.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(out.rglob("*")):
            if (path.is_file() and path.name not in (target.name, tmp.name)
                    and "outputs" not in path.relative_to(out).parts):
                tar.add(path, arcname=str(Path("aa") / path.relative_to(out)))
    os.replace(tmp, target)
    return target


def keep(out: Path, copy_to: str | None) -> Path:
    """Pack the records so far; also copy the pack to ``copy_to`` (e.g. $OUT of a device call)."""
    target = pack(out)
    if copy_to:
        Path(copy_to).mkdir(parents=True, exist_ok=True)
        tmp = Path(copy_to) / f".{target.name}.tmp"
        shutil.copyfile(target, tmp)
        os.replace(tmp, Path(copy_to) / target.name)
    return target


def cmd_run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    if len(set(versions)) != len(versions) or not set(versions) <= {"old", "new"}:
        raise SystemExit(f"--versions must name old and/or new, got {args.versions!r}")
    plugins = {"new": ROOT / "plugins"}
    if "old" in versions:
        plugins["old"] = old_plugins(args.old_plugins)
    smoke = args.cpu_smoke
    gpu = None if smoke else 0
    t_start = time.perf_counter()
    locks = Path(tempfile.mkdtemp(prefix="aa-outputs-"))  # the workers' host locks (launching cores)
    extra_env = {"NUMA_LAB_OUTPUTS": str(locks)}

    tests, where = {}, {}
    for v in versions:
        found = subprocess.run([sys.executable, "-c", WHERE], capture_output=True, text=True,
                               env=worker_env(plugins[v]))
        where[v] = found.stdout.strip() or found.stderr.strip().splitlines()[-1]
        if not where[v].startswith(str(plugins[v])):
            raise SystemExit(f"{v}: numa_ops resolves to {where[v]}, not under {plugins[v]}")
        tests[v], source = test_dicts(v, plugins[v], smoke)
        say(f"{v}: numa_ops from {Path(where[v]).parent}; test settings from {source}")
        say(f"{v}: {json.dumps(tests[v][0], sort_keys=True)}")
    order = abba_order(versions, args.processes, args.first_process)
    numactl = shutil.which("numactl")
    say(f"{len(order)} worker processes ({args.processes} per version, ABBA order), {len(CONFIGS)} configurations "
        f"each; {'numactl ' + numactl if numactl else 'numactl absent: not bound'}; budget {args.budget_s:.0f} s"
        + ("; CPU SMOKE TEST (tiny models, cuda_graph rows run eager)" if smoke else ""))
    manifest: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "versions": versions,
        "plugins": {v: str(plugins[v]) for v in versions}, "numa_ops": where, "old_commit": OLD_COMMIT,
        "processes_per_version": args.processes, "order": [f"{v}.p{k:02d}" for v, k in order],
        "configs": CONFIG_KEYS, "cpu_smoke": smoke, "budget_s": args.budget_s, "numactl": numactl,
        "python": sys.executable, "pythonpath": os.environ.get("PYTHONPATH"), "runs": [], "stopped": None,
    }
    durations: dict[str, list[float]] = {v: [] for v in versions}
    for seq, (v, k) in enumerate(order):
        elapsed = time.perf_counter() - t_start
        done = durations[v] or [d for ds in durations.values() for d in ds]
        estimate = max(done) if done else 0.0
        if elapsed + estimate > args.budget_s:
            note = (f"budget: stopped before process {seq + 1}/{len(order)} ({v}.p{k:02d}): {elapsed:.0f} s spent, "
                    f"a {v} process takes up to {estimate:.0f} s, budget {args.budget_s:.0f} s; "
                    + ", ".join(f"{x}: {len(durations[x])} processes" for x in versions))
            say(note)
            manifest["stopped"] = note
            break
        folder = out / v / f"p{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        specs = build_specs(v, k, tests[v], gpu, smoke)
        runs = folder / "runs.json"
        runs.write_text(json.dumps(specs, indent=1))
        tag = f"{v}.p{k:02d} ({seq + 1}/{len(order)})"
        timeout = args.process_timeout_s
        if args.hard_s:
            timeout = min(timeout, max(30.0, args.hard_s - elapsed))
        rc, seconds, killed = run_worker(worker_argv(runs, folder), worker_env(plugins[v], extra_env), folder,
                                         folder / "worker.log", timeout, tag, t_start)
        durations[v].append(seconds)
        records = sorted((folder / "runs").glob("*.json")) if (folder / "runs").exists() else []
        ok = sum(1 for p in records if json.loads(p.read_text()).get("success"))
        say(f"[{time.perf_counter() - t_start:6.1f}s] {tag}: exit {rc}, {seconds:.1f} s, {ok}/{len(specs)} runs ok"
            + (f", {killed}" if killed else ""))
        if ok < len(specs):
            for p in records:
                r = json.loads(p.read_text())
                if not r.get("success"):
                    say(f"    {r.get('run_id')}: {r.get('error')}")
            if rc not in (0, None) or not records:
                tail = (folder / "worker.log").read_text().splitlines()[-15:]
                say("    worker log tail:\n      " + "\n      ".join(tail))
        manifest["runs"].append({"seq": seq, "version": v, "proc": k, "rc": rc, "seconds": round(seconds, 2),
                                 "ok": ok, "killed": killed, "started_s": round(elapsed, 1)})
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
        keep(out, args.copy_to)  # what is done so far survives a kill of the whole command
        left = order[seq + 1:]
        if left:
            now = time.perf_counter() - t_start
            eta = now + sum(max(durations[x] or [seconds]) for x, _ in left)
            say(f"[{now:6.1f}s] {len(left)} processes left: all of them would end at ~{eta:.0f} s "
                f"(budget {args.budget_s:.0f} s)")
    manifest["total_s"] = round(time.perf_counter() - t_start, 1)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(locks, ignore_errors=True)
    target = keep(out, args.copy_to)
    say(f"records: {target} ({target.stat().st_size / 1024:.0f} KiB); {manifest['total_s']:.0f} s in all")
    return 0


# -- summarizing ----------------------------------------------------------------------------------
def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


def get(record: dict[str, Any], dotted: str) -> Any:
    """A nested key of a record (``metrics.samples_per_s_ci.rel_half_width``), None where any part is missing."""
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def proc_ci(values: list[float]) -> dict[str, float | None]:
    """Mean of the log headlines and its 95% t interval, as relative half-width (exp(hw) - 1)."""
    y = np.log(np.asarray(values, dtype=float))
    n = len(y)
    if n < 2:
        return {"n": n, "rel_half_width": None, "geo_mean": float(np.exp(y.mean())) if n else None}
    hw = stats.t.ppf(0.975, n - 1) * y.std(ddof=1) / math.sqrt(n)
    return {"n": n, "rel_half_width": float(math.expm1(hw)), "geo_mean": float(np.exp(y.mean()))}


def aa_arms(procs: list[int]) -> tuple[list[int], list[int]]:
    """Positions of ``procs`` (process indices) by ABBA arm: A = processes 0, 3, 4, 7, 8, ...; B = 1, 2, 5, 6, ..."""
    a = [i for i, p in enumerate(procs) if p % 4 in (0, 3)]
    b = [i for i, p in enumerate(procs) if p % 4 in (1, 2)]
    return a, b


def aa_compare(values: list[float], procs: list[int] | None = None) -> dict[str, Any]:
    """A/A: penalty 1 - exp(mean log B - mean log A), its 95% pooled-variance t interval, and the MDE.

    The MDE (95% confidence, 80% power) is (t.975 + t.80) * s_p * sqrt(1/nA + 1/nB) on logs, given as a
    relative effect exp(mde) - 1.
    """
    a_idx, b_idx = aa_arms(list(range(len(values))) if procs is None else procs)
    y = np.log(np.asarray(values, dtype=float))
    a, b = y[a_idx], y[b_idx]
    out: dict[str, Any] = {"nA": len(a), "nB": len(b), "penalty": None, "low": None, "high": None,
                           "contains_0": None, "mde": None}
    if len(a) == 0 or len(b) == 0:
        return out
    d = float(b.mean() - a.mean())
    out["penalty"] = -math.expm1(d)
    df = len(a) + len(b) - 2
    if df < 1:
        return out
    ss = float(((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum())
    sp = math.sqrt(ss / df)
    se = sp * math.sqrt(1 / len(a) + 1 / len(b))
    t975, t80 = stats.t.ppf(0.975, df), stats.t.ppf(0.80, df)
    d_lo, d_hi = d - t975 * se, d + t975 * se
    out.update(low=-math.expm1(d_hi), high=-math.expm1(d_lo), mde=math.expm1((t975 + t80) * se))
    out["contains_0"] = out["low"] <= 0 <= out["high"]
    return out


def cuped(values: list[float], controls: list[float]) -> dict[str, float | None]:
    """Share of the between-process variance of log headline explained by log control (R^2), and the
    95% interval over processes of the control-adjusted log headline (t with n - 2 df), relative."""
    out: dict[str, float | None] = {"r2": None, "rel_half_width": None, "theta": None}
    y = np.log(np.asarray(values, dtype=float))
    x = np.log(np.asarray(controls, dtype=float))
    n = len(y)
    if n < 3 or float(np.var(x)) <= 0:
        return out
    xc, yc = x - x.mean(), y - y.mean()
    theta = float((xc * yc).sum() / (xc * xc).sum())
    resid = yc - theta * xc
    ss_tot = float((yc * yc).sum())
    out["theta"] = theta
    out["r2"] = 1 - float((resid * resid).sum()) / ss_tot if ss_tot > 0 else None
    s_res = math.sqrt(float((resid * resid).sum()) / (n - 2))
    out["rel_half_width"] = math.expm1(stats.t.ppf(0.975, n - 2) * s_res / math.sqrt(n))
    return out


def target_for(config: str) -> float:
    """The issue's target for the 95% interval over processes: 1% for cuda_graph and compute-bound rows."""
    return 0.01 if ".cuda_graph." in config or config.startswith("heavy_d12.") else 0.03


def load_records(source: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every bench record (run_id aa.<version>.pNN.<config>) of a folder or a records.tar.gz."""
    records, manifest = [], None
    if source.is_file():
        with tarfile.open(source) as tar:
            for member in tar.getmembers():
                if not member.isfile() or not member.name.endswith(".json"):
                    continue
                parts = Path(member.name).parts
                data = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                if parts[-1] == "manifest.json":
                    manifest = data
                elif len(parts) >= 2 and parts[-2] == "runs":
                    records.append(data)
    else:
        for path in sorted(source.rglob("runs/*.json")):
            records.append(json.loads(path.read_text()))
        found = sorted(source.rglob("manifest.json"))
        manifest = json.loads(found[0].read_text()) if found else None
    return [r for r in records if isinstance(r, dict) and RUN_ID.match(str(r.get("run_id")))], manifest


def _pct(x: float | None, digits: int = 1, sign: str = "") -> str:
    return "-" if x is None else f"{sign}{100 * x:.{digits}f}%"


def _f(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def summarize_group(config: str, recs: list[dict[str, Any]]) -> dict[str, Any]:
    """One (configuration, version) row from its records, in process order."""
    recs = sorted(recs, key=lambda r: int(RUN_ID.match(r["run_id"])["proc"]))
    ok = [r for r in recs if r.get("success") and _num(get(r, "metrics.samples_per_s"))]
    heads = [_num(get(r, "metrics.samples_per_s")) for r in ok]
    row: dict[str, Any] = {"config": config, "n": len(heads), "failed": len(recs) - len(ok),
                           "procs": [int(RUN_ID.match(r["run_id"])["proc"]) for r in ok], "headlines": heads}
    row["spread"] = max(heads) / min(heads) - 1 if len(heads) >= 2 else None
    row.update(ci=proc_ci(heads) if heads else {"rel_half_width": None, "geo_mean": None})
    within = [_num(get(r, "metrics.samples_per_s_ci.rel_half_width")) for r in ok]
    within = [w for w in within if w is not None]
    row["within_ci"] = float(np.median(within)) if within else None
    row["aa"] = aa_compare(heads, row["procs"])
    controls = [_num(get(r, "metrics.cpu_control_rate")) for r in ok]
    row["cuped"] = cuped(heads, controls) if heads and all(c and c > 0 for c in controls) else cuped([], [])

    def med(key: str) -> float | None:
        vals = [v for v in (_num(get(r, key)) for r in ok) if v is not None]
        return float(np.median(vals)) if vals else None

    row["pipe_vs_ideal"] = med("metrics.pipelined_vs_ideal")
    checks = [(_num(get(r, "metrics.pipelined_samples_per_s_ci.low")), _num(get(r, "metrics.ideal_samples_per_s")))
              for r in ok]
    checks = [(lo, ideal) for lo, ideal in checks if lo is not None and ideal is not None]
    row["pipe_le_ideal"] = f"{sum(lo <= ideal for lo, ideal in checks)}/{len(checks)}" if checks else None
    stages = [get(r, "metrics.binding_stage") for r in ok]
    stages = [s for s in stages if s]
    row["binding"] = "/".join(f"{s}x{stages.count(s)}" if len(set(stages)) > 1 else s
                              for s in sorted(set(stages))) if stages else None
    row["h2d_gbps"], row["d2h_gbps"] = med("metrics.h2d_gbps"), med("metrics.d2h_gbps")
    row["d2h_ms"] = med("metrics.d2h_ms.median")
    return row


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        m = RUN_ID.match(r["run_id"])
        groups.setdefault((m["config"], m["version"]), []).append(r)
    order = {c: i for i, c in enumerate(CONFIG_KEYS)}
    vorder = {"old": 0, "new": 1}
    rows = []
    for (config, version), recs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][0],
                                                                           vorder.get(kv[0][1], 9), kv[0][1])):
        row = summarize_group(config, recs)
        row["version"] = version
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], manifests: list[dict[str, Any]]) -> str:
    lines = []
    for manifest in manifests:
        lines.append(f"A/A bench: started {manifest.get('started_at')}, versions {manifest.get('versions')}, "
                     f"{manifest.get('processes_per_version')} processes each planned, order "
                     f"{' '.join(manifest.get('order') or [])}"
                     + (" — CPU SMOKE TEST" if manifest.get("cpu_smoke") else ""))
        if manifest.get("stopped"):
            lines.append(f"NOTE: {manifest['stopped']}")
        killed = [f"{r['version']}.p{r['proc']:02d} ({r['killed']})"
                  for r in manifest.get("runs", []) if r.get("killed")]
        if killed:
            lines.append(f"NOTE: workers killed: {', '.join(killed)}")
    if manifests:
        lines.append("")
    lines.append("Process headlines (samples/s, process order; A/A arms: A = p0,p3,p4,p7..., B = p1,p2,p5,p6...):")
    for row in rows:
        heads = " ".join(f"p{p}:{h:.0f}" for p, h in zip(row["procs"], row["headlines"], strict=True))
        fail = f" ({row['failed']} failed)" if row["failed"] else ""
        lines.append(f"- {row['config']} [{row['version']}]: {heads}{fail}")
    lines.append("")
    head = ["configuration", "ver", "n", "geo-mean/s", "spread", "95% CI over procs", "target", "met",
            "within-run CI (median)", "A/A penalty [95% CI]", "A/A ∋ 0", "MDE", "R² control", "CUPED CI",
            "pipe/ideal", "pipe CI low ≤ ideal", "binding", "H2D GB/s", "D2H GB/s", "D2H ms"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for row in rows:
        ci = row["ci"]["rel_half_width"]
        target = target_for(row["config"])
        aa = row["aa"]
        aa_txt = "-" if aa["penalty"] is None else (
            f"{_pct(aa['penalty'], 1)} [{_pct(aa['low'], 1)}, {_pct(aa['high'], 1)}]" if aa["low"] is not None
            else _pct(aa["penalty"], 1))
        cells = [
            row["config"], row["version"], str(row["n"]) + (f" (+{row['failed']} failed)" if row["failed"] else ""),
            _f(row["ci"]["geo_mean"], 0), _pct(row["spread"]), _pct(ci, 2, "±"), f"±{100 * target:.0f}%",
            "-" if ci is None else ("yes" if ci <= target else f"no (x{ci / target:.1f})"),
            _pct(row["within_ci"], 2, "±"), aa_txt,
            "-" if aa["contains_0"] is None else ("yes" if aa["contains_0"] else "NO"),
            _pct(aa["mde"]), _f(row["cuped"]["r2"], 2), _pct(row["cuped"]["rel_half_width"], 2, "±"),
            _f(row["pipe_vs_ideal"], 3), row["pipe_le_ideal"] or "-", row["binding"] or "-",
            _f(row["h2d_gbps"]), _f(row["d2h_gbps"]), _f(row["d2h_ms"], 4),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cmd_summarize(args: argparse.Namespace) -> int:
    by_id: dict[str, dict[str, Any]] = {}
    manifests = []
    for name in args.records:
        source = Path(name)
        if source.is_dir() and not any(source.rglob("runs/*.json")) and (source / "records.tar.gz").exists():
            source = source / "records.tar.gz"
        if not source.exists():
            raise SystemExit(f"{source} does not exist")
        records, manifest = load_records(source)
        for r in records:
            by_id.setdefault(r["run_id"], r)  # the same records given twice (folder and tar) count once
        if manifest and manifest not in manifests:
            manifests.append(manifest)
    if not by_id:
        raise SystemExit(f"no bench records (run_id aa.<version>.pNN.<config>) under {' '.join(args.records)}")
    text = render(summarize(list(by_id.values())), manifests)
    print(text, end="", flush=True)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="measure the six configurations, N worker processes per version, interleaved")
    run.add_argument("--out", required=True)
    run.add_argument("--processes", type=int, default=6, help="worker processes per version")
    run.add_argument("--first-process", type=int, default=0,
                     help="index of the first process (go on from an earlier call: its records summarize together)")
    run.add_argument("--versions", default="old,new", help="old,new (ABBA order starts with the first)")
    run.add_argument("--old-plugins", default=None,
                     help=f"the old version's plugins folder (default .bench_old/plugins, "
                     f"extracted from {OLD_COMMIT})")
    run.add_argument("--cpu-smoke", action="store_true",
                     help="on the CPU, tiny models, few samples (a test of the bench)")
    run.add_argument("--budget-s", type=float, default=420.0, help="start no process that would end past this")
    run.add_argument("--hard-s", type=float, default=None,
                     help="kill a worker still running at this many seconds (default: budget + 90)")
    run.add_argument("--copy-to", default=None,
                     help="after every process, copy records.tar.gz into this folder too (a device call's $OUT)")
    run.add_argument("--process-timeout-s", type=float, default=300.0, help="kill a worker running longer than this")
    summ = sub.add_parser("summarize", help="tables from the records of a run")
    summ.add_argument("--records", required=True, nargs="+",
                      help="the run's --out folder or its records.tar.gz (several: summarized together)")
    summ.add_argument("--markdown", default=None, help="also write the tables to this file")
    args = parser.parse_args(argv)
    if args.command == "run":
        if args.processes < 1:
            parser.error("--processes must be at least 1")
        if args.hard_s is None:
            args.hard_s = args.budget_s + 90
        return cmd_run(args)
    return cmd_summarize(args)


if __name__ == "__main__":
    sys.exit(main())
