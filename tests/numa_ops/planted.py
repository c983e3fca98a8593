"""Synthetic run records with planted answers (a crossover, a NUMA penalty, a power law) for the analysis tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numa_ops import results

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


def sized_run(run_id: str, depth: int, gpu_ms: float | None = None, height: int = 224, noise: float = 1.0) -> dict[str, Any]:
    """A CUDA run of model ``d<depth>``: fixed copies, GPU compute proportional to FLOPs (unless ``gpu_ms``)."""
    flops = depth * FLOPS_PER_DEPTH
    gpu = (gpu_ms if gpu_ms is not None else flops * GPU_MS_PER_FLOP) * noise
    forward = gpu + LAUNCH_MS
    batch = H2D_MS + forward + D2H_MS
    model = {"name": f"d{depth}", "patch_size": 16, "depth": depth, "heads": 4, "dim": 256, "mlp_dim": 1024}
    rec = record(run_id, device="cuda", placement="local", gpu_id=0, lane="gpu0-cpu0-mem0", model=model, metrics={
        "samples_per_s": 8 / batch * 1000, "flops_per_sample": flops, "parameters": depth * 10**6, "execution": "eager",
        "fwd_gpu_ms": gpu, "h2d_ms": {"median": H2D_MS}, "forward_ms": {"median": forward}, "d2h_ms": {"median": D2H_MS},
        "batch_ms": {"median": batch}, "regime": "transfer-bound" if COPY_MS >= gpu else "compute-bound",
    })
    rec["test"].update(batch_size=8, tensor_shape=[3, height, height])
    h2d_bytes = 8 * 3 * height * height * 4
    rec["metrics"].update(h2d_bytes_per_batch=h2d_bytes, d2h_bytes_per_batch=8 * 1256 * 4, h2d_gbps=h2d_bytes / H2D_MS / 1e6)
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
                                  "h2d_gbps": float(np.median(serial)) / 100, "trial_samples_per_s": {"serial": serial}})
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
                mode: str | None = None, control: float | None = None, repeat: int | None = None, batch: int = 4) -> None:
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
    rec = record(run_id, device="cuda", placement=placement, gpu_id=0, lane=f"gpu0-cpu{remote}-mem{remote}", metrics=metrics)
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


# Between-process noise (sd of ln samples/s) of 8 configurations on one H200, from 6 processes each (the 95%
# interval over processes, ±18.1% for light eager pinned, is t(0.975, 5) * sd / sqrt(6)): model, execution, host memory.
PROCESS_NOISE = {
    ("light_d2", "eager", "pinned"): 0.172, ("light_d2", "eager", "pageable"): 0.102,
    ("light_d2", "cuda_graph", "pageable"): 0.0676, ("light_d2", "cuda_graph", "pinned"): 0.0038,
    ("heavy_d12", "eager", "pinned"): 0.0171, ("heavy_d12", "eager", "pageable"): 0.0190,
    ("heavy_d12", "cuda_graph", "pinned"): 0.0019, ("heavy_d12", "cuda_graph", "pageable"): 0.0076,
}
COMPUTE_BOUND = ("heavy_d12", "cuda_graph", "pinned")


def config_run(run_id: str, config: tuple[str, str, str], rate: float, repeat: int = 0, folder: str = "f1") -> dict[str, Any]:
    """One worker process's record of one of ``PROCESS_NOISE``'s configurations (a local CUDA run, batch 8, 224 px)."""
    name, execution, memory = config
    depth = int(name.split("_d")[1])
    rec = record(run_id, folder=folder, device="cuda", placement="local", placement_mode="process", gpu_id=0,
                 lane="gpu0-cpu0-mem0" + (f"-r{repeat}" if repeat else ""), repeat=repeat, study="nightly",
                 model={"name": name, "patch_size": 16, "depth": depth, "heads": 12, "dim": 768, "mlp_dim": 3072},
                 metrics={"samples_per_s": float(rate), "execution": execution, "pool_pinned": memory == "pinned",
                          "d2h_mode": "outputs", "regime": "compute-bound" if config == COMPUTE_BOUND else "launch-bound"})
    rec["test"].update(batch_size=8, tensor_shape=[3, 224, 224], execution=execution, pinned_memory=memory == "pinned",
                       d2h_mode="outputs", repeats=2)
    return rec


def night_records(rng: np.random.Generator, name: str, processes: int, slowdown: dict[tuple[str, str, str], float] | None = None
                  ) -> list[dict[str, Any]]:
    """``processes`` worker processes of each of the 8 configurations, lognormal process noise of its spread around
    1000 samples/s, times ``1 - slowdown[config]`` where planted."""
    slowdown = slowdown or {}
    recs = []
    for config, sd in PROCESS_NOISE.items():
        for i in range(processes):
            rate = 1000.0 * (1 - slowdown.get(config, 0.0)) * float(np.exp(rng.normal(0, sd)))
            recs.append(config_run(f"{name}.{'.'.join(config)}.r{i}", config, rate, repeat=i, folder=name))
    return recs
