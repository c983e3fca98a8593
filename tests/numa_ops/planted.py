"""Synthetic run records with planted answers (a crossover, a NUMA penalty, a power law) for the analysis tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numa_ops import results
from scipy import stats

from tests.numa_ops.records import record

# Crossover: the copies take COPY_MS per batch whatever the model; the GPU's compute grows linearly with
# FLOPs, GPU_MS_PER_FLOP per FLOP per sample. Compute overtakes the copies at CROSSOVER_FLOPS exactly.
H2D_MS, D2H_MS, LAUNCH_MS = 1.0, 0.2, 0.05
COPY_MS = H2D_MS + D2H_MS
GPU_MS_PER_FLOP = 1e-9
CROSSOVER_FLOPS = COPY_MS / GPU_MS_PER_FLOP  # 1.2e9: between depth 8 (0.8e9) and depth 16 (1.6e9)
FLOPS_PER_DEPTH = 10**8
DEPTHS = (1, 2, 4, 8, 16, 32)


def write(folder: Path, rec: dict[str, Any]) -> None:
    """Write ``rec`` as a run file of ``folder`` (and say so in the record)."""
    rec["folder"] = folder.name
    results.write_json_atomic(folder / "runs" / f"{rec['run_id']}.json", rec)


def sized_run(run_id: str, depth: int, gpu_ms: float | None = None, height: int = 224,
              noise: float = 1.0) -> dict[str, Any]:
    """A CUDA run of model ``d<depth>``: fixed copies, GPU compute proportional to FLOPs (unless ``gpu_ms``)."""
    flops = depth * FLOPS_PER_DEPTH
    gpu = (gpu_ms if gpu_ms is not None else flops * GPU_MS_PER_FLOP) * noise
    forward = gpu + LAUNCH_MS
    batch = H2D_MS + forward + D2H_MS
    model = {"name": f"d{depth}", "patch_size": 16, "depth": depth, "heads": 4, "dim": 256, "mlp_dim": 1024}
    rec = record(run_id, device="cuda", placement="local", gpu_id=0, lane="gpu0-cpu0-mem0", model=model, metrics={
        "samples_per_s": 8 / batch * 1000, "flops_per_sample": flops, "parameters": depth * 10**6, "execution": "eager",
        "fwd_gpu_ms": gpu, "h2d_ms": {"median": H2D_MS}, "forward_ms": {"median": forward},
        "d2h_ms": {"median": D2H_MS}, "batch_ms": {"median": batch},
        "regime": "transfer-bound" if COPY_MS >= gpu else "compute-bound",
    })
    rec["test"].update(batch_size=8, tensor_shape=[3, height, height])
    h2d_bytes = 8 * 3 * height * height * 4
    rec["metrics"].update(h2d_bytes_per_batch=h2d_bytes, d2h_bytes_per_batch=8 * 1256 * 4,
                          h2d_gbps=h2d_bytes / H2D_MS / 1e6)
    return rec


def write_crossover_runs(folder: Path, height: int = 224) -> None:
    """Three runs per model (GPU time 3% below, at, and 3% above the planted line: the median is on it)."""
    for depth in DEPTHS:
        for i, noise in enumerate((0.97, 1.0, 1.03)):
            write(folder, sized_run(f"{folder.name}.h{height}.d{depth}.{i}", depth, height=height, noise=noise))


def write_penalty_runs(folder: Path, penalty: float, seed: int, runs: int = 3, trials: int = 6, spread: float = 0.015,
                       regimes: tuple[str, str] = ("transfer-bound", "transfer-bound")) -> None:
    """Local and remote runs of one model; each trial's samples/s is noisy around 1000 and 1000 * (1 - penalty).

    ``regimes``: the regime the local and the remote runs report (a result of the run, not a setting).
    """
    rng = np.random.default_rng(seed)
    for place, mean, regime in (("local", 1000.0, regimes[0]), ("remote", 1000.0 * (1 - penalty), regimes[1])):
        for i in range(runs):
            serial = [float(v) for v in mean * (1 + rng.normal(0, spread, trials))]
            rec = record(f"{folder.name}.{place}{i}", device="cuda", placement=place, gpu_id=0,
                         lane=f"gpu0-cpu{int(place == 'remote')}-mem{int(place == 'remote')}",
                         metrics={"samples_per_s": float(np.median(serial)), "execution": "eager", "regime": regime,
                                  "h2d_gbps": float(np.median(serial)) / 100,
                                  "trial_samples_per_s": {"serial": serial}})
            rec["model"]["name"] = "m"
            write(folder, rec)


def write_power_law_runs(folder: Path, exponent: float, seed: int, spread: float = 0.03) -> None:
    """Seven models whose time per sample is ``2e-9 * parameters ** exponent``, with lognormal noise."""
    rng = np.random.default_rng(seed)
    for i, params in enumerate(1e6 * 2.0 ** np.arange(7)):
        seconds = 2e-9 * params**exponent * float(np.exp(rng.normal(0, spread)))
        rec = record(f"{folder.name}.p{i}", device="cuda", placement="local", gpu_id=0,
                     metrics={"samples_per_s": 1 / seconds, "parameters": int(params), "execution": "eager"})
        rec["model"]["name"] = f"p{i}"
        write(folder, rec)


def process_run(folder: Path, run_id: str, placement: str, rate: float, model: str = "m", pinned: bool | None = True,
                mode: str | None = None, control: float | None = None, repeat: int | None = None,
                batch: int = 4) -> None:
    """One worker process's record of a CUDA configuration: its headline ``rate`` at ``placement``.

    ``pinned`` is the host pool's ``pool_pinned`` (None: an older record without it), ``mode`` the top-level
    ``placement_mode`` (None: an older record, meaning process), ``control`` the CPU-speed control rate.
    """
    metrics: dict[str, Any] = {"samples_per_s": float(rate), "execution": "eager", "regime": "transfer-bound"}
    if pinned is not None:
        metrics["pool_pinned"] = pinned
    if control is not None:
        metrics["cpu_control_rate"] = float(control)
    remote = int(placement == "remote")
    rec = record(run_id, device="cuda", placement=placement, gpu_id=0, lane=f"gpu0-cpu{remote}-mem{remote}",
                 metrics=metrics)
    rec["model"]["name"] = model
    rec["test"]["batch_size"] = batch
    if mode is not None:
        rec["placement_mode"] = mode
    if repeat is not None:
        rec["repeat"] = repeat
    write(folder, rec)


def write_process_study(folder: Path, name: str, local: list[float], remote: list[float],
                        controls: tuple[list[float], list[float]] | None = None, **kwargs: Any) -> None:
    """A configuration measured by one worker process per rate at each placement (run ids ``<name>.<placement><i>``),
    placements interleaved by repeat; ``controls``: the CPU-speed control of each local and remote process."""
    for place, rates in (("local", local), ("remote", remote)):
        for i, rate in enumerate(rates):
            control = None if controls is None else controls[place == "remote"][i]
            process_run(folder, f"{folder.name}.{name}.{place}{i}", place, rate, control=control, repeat=i,
                        **{"model": name, **kwargs})


def lognormal_study(rng: np.random.Generator, n: int, cv: float, penalty: float,
                    base: float = 1000.0) -> tuple[list[float], list[float]]:
    """``n`` local and ``n`` remote process headlines with lognormal process noise of ``cv`` (the sd of ln)."""
    local = base * np.exp(rng.normal(0, cv, n))
    remote = base * (1 - penalty) * np.exp(rng.normal(0, cv, n))
    return [float(v) for v in local], [float(v) for v in remote]


def _paired_interval(diffs: np.ndarray, df_lost: int = 1) -> dict[str, Any]:
    """The paired t interval of block differences of ln samples/s (ratio scale) and its MDE, as the record holds it."""
    n = len(diffs)
    df = n - df_lost
    est, sd = float(np.mean(diffs)), float(np.std(diffs, ddof=1))
    half = float(stats.t.ppf(0.975, df)) * sd / np.sqrt(n)
    low, high = np.exp(est - half), np.exp(est + half)
    mde = float(np.expm1((stats.t.ppf(0.975, df) + stats.t.ppf(0.80, df)) * sd / np.sqrt(n)))
    return {"ratio": float(np.exp(est)), "low": float(low), "high": float(high), "half_width": float(np.expm1(half)),
            "df": df, "mde": mde, "verdict": "measured" if low > 1 or high < 1 else "not detectable", "estimate": est}


def paired_block(kind: str, arm_rates: list[float], seed: int, blocks: int = 12, spread: float = 0.01,
                 control_effect: float = 0.0, pinned: tuple[bool, ...] | None = None, trials_s: float = 42.0,
                 nodes: tuple[int, ...] | None = None) -> dict[str, Any]:
    """``metrics.paired`` of a run whose arm ``j`` runs at ``arm_rates[j]`` samples/s (arm 0 the reference), in ABBA
    blocks of one trial per arm each way. Each trial's rate has lognormal noise ``spread`` and follows a two-state
    CPU-speed control with elasticity ``control_effect``; memory arms carry the control-adjusted interval."""
    rng = np.random.default_rng(seed)
    k = len(arm_rates)
    nodes = nodes or tuple(range(k))
    pinned = pinned or (True,) * k
    rates: dict[int, list[float]] = {j: [] for j in range(k)}
    controls: dict[int, list[float]] = {j: [] for j in range(k)}
    block_of: dict[int, list[int]] = {j: [] for j in range(k)}
    for b in range(blocks):
        order = list(range(k)) + list(range(k))[::-1]
        if b % 2:
            order = order[::-1]
        for j in order:
            control = float(rng.choice([3e5, 7e5]) * np.exp(rng.normal(0, 0.02)))
            rate = arm_rates[j] * (control / 5e5) ** control_effect * float(np.exp(rng.normal(0, spread)))
            rates[j].append(rate)
            controls[j].append(control)
            block_of[j].append(b)
    lr = {j: np.log(rates[j]) for j in range(k)}
    lc = {j: np.log(controls[j]) for j in range(k)}
    centred = np.concatenate([lc[j] - lc[j].mean() for j in range(k)])  # pooled slope within arms
    slope = float(np.dot(centred, np.concatenate([lr[j] - lr[j].mean() for j in range(k)])) / np.dot(centred, centred))
    mean_lc = float(np.mean(np.concatenate(list(lc.values()))))

    def diffs(arm: int, logs: dict[int, np.ndarray]) -> np.ndarray:
        def per_block(j: int) -> np.ndarray:
            return np.array([logs[j][np.array(block_of[j]) == b].mean() for b in range(blocks)])
        return per_block(arm) - per_block(0)

    adjusted_logs = {j: lr[j] - slope * (lc[j] - mean_lc) for j in range(k)}
    comparisons = []
    for arm in range(1, k):
        plain = _paired_interval(diffs(arm, lr))
        adjusted = None
        if kind == "memory":
            adj = _paired_interval(diffs(arm, adjusted_logs), df_lost=2)
            adjusted = ({key: adj[key] for key in ("ratio", "low", "high", "half_width", "df", "mde", "verdict")}
                        | {"slope": slope})
        comparisons.append({"arm": arm, "vs": 0, "blocks": blocks, "block_diffs": [float(v) for v in diffs(arm, lr)],
                            **plain, "adjusted": adjusted})
    arms = []
    for j in range(k):
        moved = ({"pool_node": nodes[j], "thread_node": 0} if kind == "memory"
                 else {"pool_node": 0, "thread_node": nodes[j]})
        arms.append({"name": f"node{nodes[j]}" + ("" if pinned[j] else "-pageable"), "node": nodes[j],
                     "pinned": pinned[j], **moved, "placement": "local" if nodes[j] == 0 else "remote",
                     "numa_distance": 10 if nodes[j] == 0 else 21,
                     "trial_samples_per_s": rates[j], "cpu_control": controls[j], "launch_cpus": [1] * len(rates[j]),
                     "samples_per_s": float(np.median(rates[j]))})
    return {"kind": kind, "reference": 0, "arms": arms, "comparisons": comparisons, "design": "ABBA",
            "settle_batches": 1, "stop_reason": "target", "target": 0.02, "trials_s": trials_s}


def paired_run(folder: Path, run_id: str, paired: dict[str, Any], model: str = "m", batch: int = 8,
               **test: Any) -> dict[str, Any]:
    """A paired worker process's record (``placement_mode: paired``): the reference arm's metrics and ``paired``;
    its placement names the compared arm (arm 1). ``test``: test settings that differ from the defaults."""
    ref, arm = paired["arms"][paired["reference"]], paired["arms"][1]
    metrics = {"samples_per_s": ref["samples_per_s"], "execution": "eager", "regime": "launch-bound",
               "pool_pinned": ref["pinned"], "trial_samples_per_s": {"serial": ref["trial_samples_per_s"]},
               "paired": paired}
    rec = record(run_id, device="cuda", placement=arm["placement"], numa_distance=arm["numa_distance"], gpu_id=0,
                 lane="gpu0-paired", placement_mode="paired", metrics=metrics)
    rec["model"]["name"] = model
    rec["test"].update(batch_size=batch, **test)
    write(folder, rec)
    return rec
# Between-process noise (sd of ln samples/s) of 8 configurations on one H200, from 6 processes each (the 95%
# interval over processes, ±18.1% for light eager pinned, is t(0.975, 5) * sd / sqrt(6)): model, execution, host memory.
PROCESS_NOISE = {
    ("light_d2", "eager", "pinned"): 0.172, ("light_d2", "eager", "pageable"): 0.102,
    ("light_d2", "cuda_graph", "pageable"): 0.0676, ("light_d2", "cuda_graph", "pinned"): 0.0038,
    ("heavy_d12", "eager", "pinned"): 0.0171, ("heavy_d12", "eager", "pageable"): 0.0190,
    ("heavy_d12", "cuda_graph", "pinned"): 0.0019, ("heavy_d12", "cuda_graph", "pageable"): 0.0076,
}
COMPUTE_BOUND = ("heavy_d12", "cuda_graph", "pinned")


def config_run(run_id: str, config: tuple[str, str, str], rate: float, repeat: int = 0,
               folder: str = "f1") -> dict[str, Any]:
    """One worker process's record of one of ``PROCESS_NOISE``'s configurations (a local CUDA run, batch 8, 224 px)."""
    name, execution, memory = config
    depth = int(name.split("_d")[1])
    rec = record(run_id, folder=folder, device="cuda", placement="local", placement_mode="process", gpu_id=0,
                 lane="gpu0-cpu0-mem0" + (f"-r{repeat}" if repeat else ""), repeat=repeat, study="nightly",
                 model={"name": name, "patch_size": 16, "depth": depth, "heads": 12, "dim": 768, "mlp_dim": 3072},
                 metrics={"samples_per_s": float(rate), "execution": execution, "pool_pinned": memory == "pinned",
                          "d2h_mode": "outputs",
                          "regime": "compute-bound" if config == COMPUTE_BOUND else "launch-bound"})
    rec["test"].update(batch_size=8, tensor_shape=[3, 224, 224], execution=execution, pinned_memory=memory == "pinned",
                       d2h_mode="outputs", repeats=2)
    return rec


def night_records(rng: np.random.Generator, name: str, processes: int,
                  slowdown: dict[tuple[str, str, str], float] | None = None) -> list[dict[str, Any]]:
    """``processes`` worker processes of each of the 8 configurations, lognormal process noise of its spread around
    1000 samples/s, times ``1 - slowdown[config]`` where planted."""
    slowdown = slowdown or {}
    recs = []
    for config, sd in PROCESS_NOISE.items():
        for i in range(processes):
            rate = 1000.0 * (1 - slowdown.get(config, 0.0)) * float(np.exp(rng.normal(0, sd)))
            recs.append(config_run(f"{name}.{'.'.join(config)}.r{i}", config, rate, repeat=i, folder=name))
    return recs
