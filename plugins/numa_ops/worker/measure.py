"""One run's measurement: trials of the engine's passes (:mod:`numa_ops.worker.engine`), then its metrics.

Each trial runs a serial pass (the headline) beside a CPU-speed control on the launching core and, on a
GPU, a pipelined and a gated stage pass; a copy micro-pass follows the trials. The ideal pipelined rate
is bounded by the slowest of the gated stages and the CPU's issue time per batch; the record names the
stage that binds.

Passes are sized by time (at least ``min_trial_s`` a trial, in whole passes of ``num_samples``). The
headline is the median of the trials with its order-statistic interval (``worker.stats``); the number
of trials is fixed by the pilot trials' spread. Garbage collection is frozen and off while timing.
On the CPU there is no copy: only the forward is timed, copies are marked skipped.
"""

from __future__ import annotations

import gc
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from numa_ops import regime
from numa_ops.config import TestConfig
from numa_ops.record import RunMetrics
from numa_ops.specs import RunSpec
from numa_ops.worker import flops
from numa_ops.worker.engine import SLOTS, STAGES, Engine
from numa_ops.worker.launch_thread import Disturbance, LaunchCore, control_rate
from numa_ops.worker.metric_types import (
    BindingJson,
    BreakEvenJson,
    CopyMetricsJson,
    CopyPassJson,
    CpuMetricsJson,
    DisturbanceJson,
    EngineMetricsJson,
    Interval,
    MetricsJson,
    StageMetricsJson,
    TrialMetricsJson,
)
from numa_ops.worker.stats import StoppingRule, confidence_interval, percentiles
from numa_ops.worker.telemetry import Telemetry, empty

MAX_STAGE_BATCHES = 20  # gated batches per trial: enough for stage medians, each batch pays its spins
CONTROL_FLAG = 0.10  # a trial whose CPU-speed control is this far from the run's median is flagged


def current_cpu() -> int | None:
    """The CPU the calling (launching) thread is on now, from ``/proc/thread-self/stat``."""
    try:
        stat = Path("/proc/thread-self/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def cpu_node(cpu: int | None) -> int | None:
    """The NUMA node of ``cpu`` (sysfs), or None."""
    if cpu is None:
        return None
    nodes = list(Path(f"/sys/devices/system/cpu/cpu{cpu}").glob("node[0-9]*"))
    return int(nodes[0].name[4:]) if nodes else None


def _gbps(nbytes: int, ms: float | None) -> float | None:
    return None if not ms else nbytes / (ms / 1e3) / 1e9


def stopping_rule(test: TestConfig) -> StoppingRule:
    """The run's trial budget."""
    return StoppingRule(
        target=test.ci_target, min_trials=test.min_trials, max_trials=test.max_trials, max_time_s=test.max_trial_time_s,
    )


def passes_for(seconds: float, min_trial_s: float) -> int:
    """Whole passes a trial needs to last ``min_trial_s`` (one pass took ``seconds``)."""
    return max(1, math.ceil(min_trial_s / seconds)) if seconds > 0 else 1


def binding(gpu: dict[str, list[float]], issue_batch: list[float], cuda: bool) -> BindingJson:
    """The stage that bounds the pipelined rate, with its margin over the next and whether it is clear.

    Clear: the binding stage's median exceeds the next one's by more than the larger of their relative
    interquartile ranges (one noisy median does not decide the regime).
    """
    if not cuda:
        return {"binding_stage": None, "binding_margin": None, "binding_clear": None, "regime": None}
    series = {k: gpu[k] for k in STAGES} | {"cpu_issue": issue_batch}
    med = {k: float(np.median(v)) for k, v in series.items() if v}
    iqr = {
        k: float(np.subtract(*np.percentile(v, [75, 25]))) / med[k] if med[k] else 0.0 for k, v in series.items() if v
    }
    ranked = sorted(med, key=med.__getitem__, reverse=True)
    top, second = ranked[0], ranked[1]
    margin = med[top] / med[second] - 1 if med[second] else math.inf
    return {"binding_stage": top, "binding_margin": margin, "binding_clear": margin > max(iqr[top], iqr[second]),
            "regime": regime.of_binding(top)}


def trial_flags(controls: list[float], disturbances: list[DisturbanceJson], trial_s: list[float]) -> list[list[str]]:
    """Per trial, what makes it suspect: the CPU slower or faster than the run's norm, the thread
    switched out, moved, or its core's time stolen."""
    norm = float(np.median(controls)) if controls else 0.0
    out = []
    for control, dist, secs in zip(controls, disturbances, trial_s, strict=True):
        flags = []
        if norm and abs(control / norm - 1) > CONTROL_FLAG:
            flags.append(f"cpu control {control / norm - 1:+.0%} of the run's median")
        if dist.get("migrations"):
            flags.append(f"{dist['migrations']} CPU migration(s)")
        if dist.get("steal_ms") and dist["steal_ms"] > 0.01 * secs * 1e3:
            flags.append(f"steal {dist['steal_ms']:.0f} ms")
        if dist.get("involuntary_switches", 0) > 10 * max(secs, 0.1):
            flags.append(f"{dist['involuntary_switches']} involuntary context switches")
        out.append(flags)
    return out


def measure_run(
    spec: RunSpec,
    device: torch.device,
    nvml_index: int | None = None,
    before_timing: Callable[[], None] | None = None,
    core: LaunchCore | None = None,
    arm_cores: dict[int, LaunchCore] | None = None,
) -> RunMetrics:
    """Measure one run spec on ``device`` and return its metrics.

    ``before_timing`` is called once the run is built and warmed up, just before the timed trials
    (a multi-GPU pattern waits there for its other GPUs). ``core``: the launching thread's core;
    ``arm_cores``: a paired run's thread arms' cores, by node.
    """
    if "torch._dynamo" in sys.modules:  # no compiled state carried over from the worker's previous run; where
        torch._dynamo.reset()  # nothing compiled, dynamo is not imported: its import alone takes seconds
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if spec.placement_mode == "paired":
        from numa_ops.worker.paired import measure_paired

        return RunMetrics.model_validate(measure_paired(spec, device, nvml_index, before_timing, core, arm_cores))
    engine = Engine(spec.model, spec.test, device, spec.placement_mode, spec.host_pool_node)
    try:
        return RunMetrics.model_validate(_measure(spec, engine, nvml_index, before_timing, core))
    finally:
        engine.close()


@dataclass(frozen=True)
class PassSizes:
    """Batches per pass of each kind: whole passes of ``num_samples``, enough for ``min_trial_s`` a trial."""

    num_batches: int  # one pass of num_samples
    serial: int
    pipelined: int
    stage: int


@dataclass
class Trials:
    """What the timed trials gathered, trial by trial."""

    launch_cpu: int | None
    serial_rates: list[float] = field(default_factory=list)
    pipe_rates: list[float] = field(default_factory=list)
    gpu: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in STAGES})  # gated stage times, ms
    issue: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in STAGES})  # CPU issue times, ms
    controls: list[float] = field(default_factory=list)
    disturbances: list[DisturbanceJson] = field(default_factory=list)
    trial_s: list[float] = field(default_factory=list)
    trial_cpus: list[int | None] = field(default_factory=list)
    stop_reason: str | None = None
    seconds: float = 0.0
    timed_from: float = 0.0  # epoch seconds: the window of the timed trials (overlap of patterns)
    timed_to: float = 0.0


def _measure(
    spec: RunSpec, engine: Engine, nvml_index: int | None, before_timing: Callable[[], None] | None,
    core: LaunchCore | None,
) -> MetricsJson:
    """Warm up, size the passes, run the timed trials, time the copies, and put the metrics together."""
    test = spec.test
    engine.warmup(test.warmup_batches)
    sizes = size_passes(engine, test)
    if before_timing is not None:
        before_timing()
    telemetry_mode = test.telemetry if engine.cuda else "off"
    during = Telemetry(nvml_index if telemetry_mode == "during" else None, cpus=core.others() if core else None)
    rule = stopping_rule(test)
    trials = _run_trials(engine, sizes, rule, during, core)
    copies = engine.copy_bandwidth()
    telemetry = separate_telemetry(engine, sizes, nvml_index, core) if telemetry_mode == "separate" else during
    return compose_metrics(spec, engine, sizes, trials, copies, telemetry, telemetry_mode, core)


def compose_metrics(
    spec: RunSpec, engine: Engine, sizes: PassSizes, trials: Trials, copies: CopyPassJson, telemetry: Telemetry,
    telemetry_mode: str, core: LaunchCore | None, break_even: bool = True,
) -> MetricsJson:
    """A run's metrics from its trials and copy pass: headline, stages, copies, engine, CPU, telemetry."""
    if not engine.cuda:  # on the CPU the serial pass's forward is the stage: nothing runs behind the issuing thread
        trials.gpu["forward"] = list(trials.issue["forward"])
    stages = _stage_metrics(engine, trials, copies)
    metrics: MetricsJson = {
        **_trial_metrics(engine, spec.test, sizes, trials, stopping_rule(spec.test), stages),
        **stages,
        **_copy_metrics(engine, copies, stages),
        **_engine_metrics(engine),
        **_cpu_metrics(trials, core),
        "telemetry": {**(telemetry.summary() if telemetry_mode != "off" else empty()), "when": telemetry_mode},
    }
    if break_even and engine.compile_s is not None:
        metrics.update(_break_even(spec, engine.device, engine, metrics["fwd_ms"]))
    return metrics


def size_passes(engine: Engine, test: TestConfig) -> PassSizes:
    """Time one pass of each kind and size the trials' passes from it."""
    num_batches = math.ceil(test.num_samples / engine.batch_size)
    serial = num_batches * passes_for(engine.serial_pass(num_batches), test.min_trial_s)
    pipelined = num_batches * passes_for(engine.pipelined_pass(num_batches), test.min_trial_s) if engine.cuda else 0
    return PassSizes(num_batches, serial, pipelined, min(num_batches, MAX_STAGE_BATCHES))


@contextmanager
def garbage_collection_off() -> Iterator[None]:
    """Collect once, then freeze and switch off the collector while timing."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def _run_trials(
    engine: Engine, sizes: PassSizes, rule: StoppingRule, telemetry: Telemetry, core: LaunchCore | None
) -> Trials:
    """Trials until the stopping rule says the intervals are tight enough (or the budget is spent)."""
    trials = Trials(launch_cpu=core.cpu if core is not None and core.cpu is not None else current_cpu())
    trials.timed_from = time.time()
    t0 = time.perf_counter()
    with garbage_collection_off(), telemetry:
        while True:
            one_trial(engine, sizes, trials, core)
            rates = [trials.serial_rates, trials.pipe_rates] if engine.cuda else [trials.serial_rates]
            done, trials.stop_reason = rule.decide(rates, time.perf_counter() - t0)
            if done:
                break
    trials.seconds = time.perf_counter() - t0
    trials.timed_to = time.time()
    return trials


def one_trial(
    engine: Engine, sizes: PassSizes, trials: Trials, core: LaunchCore | None, pipelined: bool = True
) -> None:
    """One trial: a serial pass (with the CPU-speed control), and on a GPU a stage pass and (``pipelined``) a
    pipelined pass."""
    if core is not None:
        trials.launch_cpu = core.hop()
    trials.trial_cpus.append(trials.launch_cpu)
    start, before = time.perf_counter(), Disturbance.now(trials.launch_cpu)
    samples = [control_rate(3)]
    bs = engine.batch_size
    trials.serial_rates.append(sizes.serial * bs / engine.serial_pass(sizes.serial, trials.issue, samples))
    if engine.cuda and pipelined:
        trials.pipe_rates.append(sizes.pipelined * bs / engine.pipelined_pass(sizes.pipelined))
    if engine.cuda:
        stages = engine.stage_pass(sizes.stage)
        for k in STAGES:
            trials.gpu[k] += stages["gpu"][k]
    samples.append(control_rate(3))
    trials.controls.append(float(np.median(samples)))
    trials.disturbances.append(before.since())
    trials.trial_s.append(time.perf_counter() - start)


def separate_telemetry(engine: Engine, sizes: PassSizes, nvml_index: int | None, core: LaunchCore | None) -> Telemetry:
    """One more pass of each kind, not counted, with NVML sampling (``test.telemetry=separate``)."""
    with Telemetry(nvml_index, cpus=core.others() if core else None) as telemetry:
        engine.serial_pass(sizes.serial)
        engine.pipelined_pass(sizes.pipelined)
    return telemetry


def _trial_metrics(
    engine: Engine, test: TestConfig, sizes: PassSizes, trials: Trials, rule: StoppingRule, stages: StageMetricsJson
) -> TrialMetricsJson:
    """The headline (serial samples/s, the median of the trials, and its interval), the pipelined and ideal
    rates, and how the trials went."""
    cuda, bs = engine.cuda, engine.batch_size
    serial_ci = confidence_interval(trials.serial_rates)
    pipe_ci = confidence_interval(trials.pipe_rates) if cuda else None
    slowest_ms = (
        max([stages[f"{k}_ms"]["median"] for k in STAGES] + [stages["issue_ms"]["batch"]["median"]]) if cuda else None
    )
    ideal = bs / (slowest_ms / 1e3) if slowest_ms else None
    issue_batch = [sum(x) for x in zip(*(trials.issue[k] for k in STAGES), strict=True)]

    def tight(ci: Interval | None) -> bool:
        return ci is not None and ci["rel_half_width"] is not None and ci["rel_half_width"] <= rule.target

    return {
        "device": "cuda" if cuda else "cpu",
        "execution": engine.execution,
        "d2h_mode": engine.d2h_mode,
        "copies": "timed" if cuda else "skipped (cpu: no host-device copy)",
        "timing": "cuda_events_gated" if cuda else "perf_counter",
        "samples_measured": sizes.num_batches * bs,
        "batches": sizes.num_batches,
        "batches_per_trial": {"serial": sizes.serial, "pipelined": sizes.pipelined, "stage": sizes.stage},
        "min_trial_s": test.min_trial_s,
        "trials": len(trials.serial_rates),
        "trials_s": trials.seconds,
        "trial_s": trials.trial_s,
        "timed_from": trials.timed_from,
        "timed_to": trials.timed_to,
        "ci_target": rule.target,
        "ci_target_met": tight(serial_ci) and (pipe_ci is None or tight(pipe_ci)),
        "stop_reason": trials.stop_reason,
        "samples_per_s": serial_ci["median"],
        "samples_per_s_ci": serial_ci,
        "serial_samples_per_s": serial_ci["median"],
        "pipelined_samples_per_s": pipe_ci["median"] if pipe_ci else None,
        "pipelined_samples_per_s_ci": pipe_ci,
        "ideal_samples_per_s": ideal,
        **binding(trials.gpu, issue_batch, cuda),
        "pipelined_vs_ideal": (pipe_ci["median"] / ideal) if pipe_ci and ideal else None,
        "pipelined_vs_serial": (pipe_ci["median"] / serial_ci["median"]) if pipe_ci else None,
        "trial_samples_per_s": {"serial": trials.serial_rates, "pipelined": trials.pipe_rates},
    }


def _stage_metrics(engine: Engine, trials: Trials, copies: CopyPassJson) -> StageMetricsJson:
    """Each stage's GPU time and CPU issue time, the forward's, and how the gates held."""
    cuda, gpu, issue = engine.cuda, trials.gpu, trials.issue
    issue_batch = [sum(x) for x in zip(*(issue[k] for k in STAGES), strict=True)]
    gpu_batch = [sum(x) for x in zip(*(gpu[k] for k in STAGES), strict=True)] if cuda else gpu["forward"]
    stage_pct = {f"{k}_ms": percentiles(gpu[k]) for k in STAGES}
    fwd_gpu = stage_pct["forward_ms"]["median"]
    fwd_issue = percentiles(issue["forward"])["median"]
    fwd_ms = max(fwd_gpu, fwd_issue) if cuda else fwd_gpu
    gate = {"spins_ms": engine.spins, "misses": engine.gate_misses, "gated_batches": engine.gated_batches,
            "copy_misses": copies.get("gate_misses"),
            "h2d": "gated" if engine.pool.pinned else "not gated: a pageable copy is staged by the CPU inside the call"}
    return {
        **stage_pct,
        "batch_ms": percentiles(gpu_batch),
        "issue_ms": {k: percentiles(issue[k]) for k in STAGES} | {"batch": percentiles(issue_batch)},
        "fwd_eager_ms": fwd_ms if engine.execution == "eager" else None,
        "fwd_ms": fwd_ms,
        "fwd_gpu_ms": fwd_gpu if cuda else None,
        "fwd_issue_ms": fwd_issue if cuda else None,
        "yardstick_error": None if cuda else "cpu",
        "launch_overhead_share": max(0.0, 1 - fwd_gpu / fwd_issue) if cuda and fwd_issue else None,
        "gate": gate if cuda else None,
    }


def _copy_metrics(engine: Engine, copies: CopyPassJson, stages: StageMetricsJson) -> CopyMetricsJson:
    """Bytes moved per batch and per sample, the copy micro-pass's GB/s and each copy stage's."""
    cuda = engine.cuda
    per_sample = flops.bytes_per_sample(engine.vit, engine.shape, engine.d2h_mode)
    return {
        "copy_pass": {k: v for k, v in copies.items() if k not in ("h2d_gbps", "d2h_gbps")} if cuda else None,
        "h2d_bytes_per_batch": engine.pool.batch_bytes if cuda else 0,
        "d2h_bytes_per_batch": engine.d2h_bytes if cuda else 0,
        "h2d_gbps": copies["h2d_gbps"],
        "d2h_gbps": copies["d2h_gbps"],
        "h2d_stage_gbps": _gbps(engine.pool.batch_bytes, stages["h2d_ms"]["median"]) if cuda else None,
        "d2h_stage_gbps": _gbps(engine.d2h_bytes, stages["d2h_ms"]["median"]) if cuda else None,
        "flops_per_sample": flops.flops_per_sample(engine.vit, engine.shape),
        "h2d_bytes_per_sample": per_sample["h2d"],
        "d2h_bytes_per_sample": per_sample["d2h"],
    }


def _engine_metrics(engine: Engine) -> EngineMetricsJson:
    """The host pool (size, pinning, where its pages are), the model, compilation and GPU memory."""
    return {
        "pool_mb": engine.pool.nbytes / 2**20,
        "pool_batches": engine.pool.num_batches,
        "pool_pinned": engine.pool.pinned,
        "pool_fill_s": engine.pool_fill_s,
        "pool_pages": engine.pool_pages,
        "placement_mode": engine.placement_mode,
        "parameters": engine.parameters,
        "first_call_s": engine.first_call_s,
        "compile_s": engine.compile_s,
        "compile_break_even_samples": None,
        "peak_gpu_mem_mb": torch.cuda.max_memory_allocated(engine.device) / 2**20 if engine.cuda else None,
    }


def _cpu_metrics(trials: Trials, core: LaunchCore | None) -> CpuMetricsJson:
    """The launching thread: its CPU-speed control, what disturbed it in each trial, and where it ran."""
    control_ci = confidence_interval(trials.controls)
    return {
        "cpu_control": {"unit": "CPU tensor ops/s on the launching core", "trials": trials.controls,
                        "median": control_ci["median"], "low": control_ci["low"], "high": control_ci["high"]},
        "cpu_control_rate": control_ci["median"],
        "trial_disturbance": trials.disturbances,
        "trial_flags": trial_flags(trials.controls, trials.disturbances, trials.trial_s),
        "intra_op_threads": torch.get_num_threads(),
        "launch_cpu": trials.launch_cpu,
        "trial_launch_cpu": trials.trial_cpus,
        "launch_cpu_node": cpu_node(trials.launch_cpu),
        "launch_core": core.summary() if core is not None else None,
    }


def _break_even(spec: RunSpec, device: torch.device, engine: Engine, compiled_fwd_ms: float) -> BreakEvenJson:
    """Samples after which compiling paid off, against the eager forward of the same model.

    Both forwards are their serial cost: the larger of the GPU's time and the CPU's issue time.
    """
    eager_test = spec.test.model_copy(update={"execution": "eager", "compile_model": False})
    eager = Engine(spec.model, eager_test, device, spec.placement_mode, spec.host_pool_node)
    try:
        eager.warmup(3)
        issue: dict[str, list[float]] = {k: [] for k in STAGES}
        eager.serial_pass(max(8, SLOTS), issue)
        stages = eager.stage_pass(max(8, SLOTS))
        eager_fwd = max(percentiles(stages["gpu"]["forward"])["median"], percentiles(issue["forward"])["median"])
    finally:
        eager.close()
    saved_ms_per_batch = eager_fwd - compiled_fwd_ms
    overhead_s = (engine.compile_s or 0.0) - (eager.first_call_s or 0.0)
    if saved_ms_per_batch <= 0:
        return {"eager_reference_fwd_ms": eager_fwd, "compile_break_even_samples": None,
                "compile_speedup": eager_fwd / compiled_fwd_ms, "compile_pays_off": False}
    batches = overhead_s * 1e3 / saved_ms_per_batch
    return {
        "eager_reference_fwd_ms": eager_fwd,
        "compile_speedup": eager_fwd / compiled_fwd_ms,
        "compile_overhead_s": overhead_s,
        "compile_break_even_samples": math.ceil(max(0.0, batches) * engine.batch_size),
        "compile_pays_off": True,
    }
