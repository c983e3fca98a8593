"""One run's measurement: H2D copy, forward and D2H copy, timed apart, over repeated trials.

Two timing modes, both in every CUDA record:

- ``serial``: each batch's H2D, forward and D2H bracketed by CUDA events, the batch synchronized
  before the next starts, so the stage times are clean;
- ``pipelined``: H2D, compute and D2H on three CUDA streams with two buffer slots, so a batch's copy
  overlaps the previous batch's forward, as a production pipeline runs. Its ideal bound is
  ``batch / max(stage)`` from the serial stage medians.

Trials alternate serial and pipelined passes of ``num_samples`` each, after warm-up, until the 95%
confidence interval of both throughputs is within ``ci_target`` or a trial/time budget runs out.
On the CPU there is no copy: only the forward is timed (``perf_counter``), copies are marked skipped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from numa_ops import regime
from numa_ops.worker import flops
from numa_ops.worker.model import build_model
from numa_ops.worker.pages import placement_proof
from numa_ops.worker.pool import HostPool
from numa_ops.worker.stats import StoppingRule, confidence_interval, percentiles
from numa_ops.worker.telemetry import Telemetry, empty

SLOTS = 2
EXECUTIONS = ("eager", "cuda_graph", "compile", "compile_reduce_overhead")
Forward = Callable[[], tuple[torch.Tensor, ...]]


def _nvtx(name: str, cuda: bool):
    return torch.cuda.nvtx.range(name) if cuda else nullcontext()


def _graph_forward(model: torch.nn.Module, static_in: torch.Tensor, stream: torch.cuda.Stream | None = None) -> Forward:
    """Capture ``model(static_in)`` as a CUDA graph; the returned callable replays it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model(static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = model(static_in)

    def replay() -> tuple[torch.Tensor, ...]:
        graph.replay()
        return static_out

    return replay


class Engine:
    """Everything one run needs, built once: pool, model, buffers, streams, forwards per slot."""

    def __init__(self, spec: dict[str, Any], device: torch.device):
        test, model_cfg = spec["test"], spec["model"]
        self.test, self.model_cfg, self.device = test, model_cfg, device
        self.cuda = device.type == "cuda"
        self.batch_size, self.shape = test["batch_size"], test["tensor_shape"]
        self.d2h_mode = test.get("d2h_mode", "outputs")
        execution = test.get("execution", "eager")
        if execution == "eager" and test.get("compile_model"):
            execution = "compile"
        if execution not in EXECUTIONS:
            raise ValueError(f"test.execution must be one of {EXECUTIONS}, got {execution!r}")
        if execution == "cuda_graph" and not self.cuda:
            raise ValueError("test.execution=cuda_graph needs a CUDA device")
        self.execution = execution

        t0 = time.perf_counter()
        self.pool = HostPool(
            test["memory_size_mb"], self.batch_size, self.shape, pinned=self.cuda and test.get("pinned_memory", True)
        )
        self.pool_fill_s = time.perf_counter() - t0
        self.pool_pages = placement_proof(self.pool.data.data_ptr(), spec.get("mem_node", 0))
        self.model = build_model(model_cfg, self.shape, self.d2h_mode).to(device).eval()
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self.dev_in = [torch.empty(self.pool.batch_shape, device=device) for _ in range(SLOTS)]
        with torch.inference_mode():
            probe = self.model(self.dev_in[0].normal_())
        self.out_shapes = [tuple(t.shape) for t in probe]
        self.dev_out = [[torch.empty(s, device=device) for s in self.out_shapes] for _ in range(SLOTS)]
        pin = self.cuda
        self.host_out = [[torch.empty(s, pin_memory=pin) for s in self.out_shapes] for _ in range(SLOTS)]
        self.d2h_bytes = sum(math.prod(s) * 4 for s in self.out_shapes)
        self.compile_s: float | None = None
        self.first_call_s: float | None = None
        self.forwards = self._build_forwards()

    # -- forwards ---------------------------------------------------------------------------
    def _build_forwards(self) -> list[Forward]:
        model, slots = self.model, self.dev_in
        if self.execution == "cuda_graph":
            with torch.inference_mode():
                t0 = time.perf_counter()
                fwds = [_graph_forward(model, slots[k]) for k in range(SLOTS)]
                torch.cuda.synchronize(self.device)
                self.first_call_s = time.perf_counter() - t0
            return fwds
        if self.execution.startswith("compile"):
            mode = "reduce-overhead" if self.execution == "compile_reduce_overhead" else None
            compiled = torch.compile(model, mode=mode)
            mark = torch.compiler.cudagraph_mark_step_begin if mode else (lambda: None)
            with torch.inference_mode():
                t0 = time.perf_counter()
                mark()
                compiled(slots[0])
                if self.cuda:
                    torch.cuda.synchronize(self.device)
                self.first_call_s = self.compile_s = time.perf_counter() - t0

            def fwd(k: int) -> Forward:
                def call() -> tuple[torch.Tensor, ...]:
                    mark()
                    return compiled(slots[k])

                return call

            return [fwd(k) for k in range(SLOTS)]
        with torch.inference_mode():
            t0 = time.perf_counter()
            model(slots[0])
            if self.cuda:
                torch.cuda.synchronize(self.device)
            self.first_call_s = time.perf_counter() - t0
        return [lambda k=k: model(slots[k]) for k in range(SLOTS)]

    def warmup(self, batches: int) -> None:
        with torch.inference_mode():
            for i in range(max(batches, SLOTS)):
                k = i % SLOTS
                self.dev_in[k].copy_(self.pool.batch(i), non_blocking=self.cuda)
                for dst, src in zip(self.host_out[k], self.forwards[k](), strict=True):
                    dst.copy_(src, non_blocking=self.cuda)
            if self.cuda:
                torch.cuda.synchronize(self.device)

    # -- passes -----------------------------------------------------------------------------
    def serial_pass(self, num_batches: int) -> dict[str, list[float] | float]:
        """Every batch timed stage by stage; returns per-batch ms lists and the wall time."""
        h2d, fwd, d2h, total = [], [], [], []
        cuda, fwd0, dev_in, host_out = self.cuda, self.forwards[0], self.dev_in[0], self.host_out[0]
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)] if cuda else None
        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(num_batches):
                host = self.pool.batch(i)
                if cuda:
                    ev[0].record()
                    with _nvtx("h2d", cuda):
                        dev_in.copy_(host, non_blocking=True)
                    ev[1].record()
                    with _nvtx("forward", cuda):
                        outs = fwd0()
                    ev[2].record()
                    with _nvtx("d2h", cuda):
                        for dst, src in zip(host_out, outs, strict=True):
                            dst.copy_(src, non_blocking=True)
                    ev[3].record()
                    ev[3].synchronize()
                    h2d.append(ev[0].elapsed_time(ev[1]))
                    fwd.append(ev[1].elapsed_time(ev[2]))
                    d2h.append(ev[2].elapsed_time(ev[3]))
                    total.append(ev[0].elapsed_time(ev[3]))
                else:
                    dev_in.copy_(host)  # untimed: the CPU has no host-device copy to measure
                    c0 = time.perf_counter()
                    outs = fwd0()
                    for dst, src in zip(host_out, outs, strict=True):
                        dst.copy_(src)
                    ms = (time.perf_counter() - c0) * 1e3
                    fwd.append(ms)
                    total.append(ms)
        return {"h2d": h2d, "fwd": fwd, "d2h": d2h, "total": total, "wall_s": time.perf_counter() - start}

    def pipelined_pass(self, num_batches: int) -> float:
        """H2D, compute and D2H on their own streams, two slots deep; returns the wall time."""
        s_in, s_comp, s_out = torch.cuda.Stream(), torch.cuda.Stream(), torch.cuda.Stream()
        h2d_done = [torch.cuda.Event() for _ in range(SLOTS)]
        comp_done = [torch.cuda.Event() for _ in range(SLOTS)]
        d2h_done = [torch.cuda.Event() for _ in range(SLOTS)]
        torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(num_batches):
                k = i % SLOTS
                with torch.cuda.stream(s_in), _nvtx("h2d", True):
                    if i >= SLOTS:
                        s_in.wait_event(comp_done[k])  # slot's input is free once its forward ran
                    self.dev_in[k].copy_(self.pool.batch(i), non_blocking=True)
                    h2d_done[k].record(s_in)
                with torch.cuda.stream(s_comp), _nvtx("forward", True):
                    s_comp.wait_event(h2d_done[k])
                    if i >= SLOTS:
                        s_comp.wait_event(d2h_done[k])  # slot's outputs are free once copied back
                    for dst, src in zip(self.dev_out[k], self.forwards[k](), strict=True):
                        dst.copy_(src)
                    comp_done[k].record(s_comp)
                with torch.cuda.stream(s_out), _nvtx("d2h", True):
                    s_out.wait_event(comp_done[k])
                    for dst, src in zip(self.host_out[k], self.dev_out[k], strict=True):
                        dst.copy_(src, non_blocking=True)
                    d2h_done[k].record(s_out)
        torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    def graph_yardstick(self, reps: int = 50) -> dict[str, Any]:
        """The eager model's forward replayed as a CUDA graph: the GPU's own time per batch."""
        if not self.cuda:
            return {"fwd_gpu_ms": None, "yardstick_error": "cpu"}
        try:
            with torch.inference_mode():
                replay = _graph_forward(self.model, self.dev_in[0])
                for _ in range(5):
                    replay()
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                times = []
                for _ in range(reps):
                    e0.record()
                    replay()
                    e1.record()
                    e1.synchronize()
                    times.append(e0.elapsed_time(e1))
            return {"fwd_gpu_ms": percentiles(times)["median"], "yardstick_error": None}
        except Exception as exc:  # noqa: BLE001 - a model that cannot be captured has no yardstick
            return {"fwd_gpu_ms": None, "yardstick_error": f"{type(exc).__name__}: {exc}"[:500]}


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


def stopping_rule(test: dict[str, Any]) -> StoppingRule:
    """The run's adaptive-stopping settings."""
    return StoppingRule(
        target=test.get("ci_target", 0.02),
        min_trials=test.get("min_trials", 3),
        max_trials=test.get("max_trials", 20),
        max_time_s=test.get("max_trial_time_s", 120.0),
    )


def measure_run(
    spec: dict[str, Any],
    device: torch.device,
    nvml_index: int | None = None,
    before_timing: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Measure one run spec on ``device`` and return its metrics.

    ``before_timing`` is called once the run is built and warmed up, just before the timed trials
    (a multi-GPU pattern waits there for its other GPUs).
    """
    test = spec["test"]
    engine = Engine(spec, device)
    cuda, bs = engine.cuda, engine.batch_size
    engine.warmup(test.get("warmup_batches", 3))
    if before_timing is not None:
        before_timing()
    timed_from = time.time()
    num_batches = math.ceil(test["num_samples"] / bs)
    samples = num_batches * bs
    rule = stopping_rule(test)

    serial_rates, pipe_rates = [], []
    h2d, fwd, d2h, total = [], [], [], []
    t0 = time.perf_counter()
    stop_reason = None
    mode = test.get("telemetry", "separate") if cuda else "off"
    with Telemetry(nvml_index if mode == "during" else None) as telemetry:
        while True:
            s = engine.serial_pass(num_batches)
            serial_rates.append(samples / s["wall_s"])
            h2d += s["h2d"]
            fwd += s["fwd"]
            d2h += s["d2h"]
            total += s["total"]
            if cuda:
                pipe_rates.append(samples / engine.pipelined_pass(num_batches))
            done, stop_reason = rule.decide([serial_rates, pipe_rates] if cuda else [serial_rates], time.perf_counter() - t0)
            if done:
                break
    trials_s = time.perf_counter() - t0
    timed_to = time.time()
    launch_cpu = current_cpu()
    if mode == "separate":  # one more pass of each kind, not counted, with NVML sampling
        with Telemetry(nvml_index) as telemetry:
            engine.serial_pass(num_batches)
            engine.pipelined_pass(num_batches)

    stages = {"h2d_ms": percentiles(h2d), "forward_ms": percentiles(fwd), "d2h_ms": percentiles(d2h), "batch_ms": percentiles(total)}
    serial_ci = confidence_interval(serial_rates)
    pipe_ci = confidence_interval(pipe_rates) if cuda else None
    medians = [stages[k]["median"] for k in ("h2d_ms", "forward_ms", "d2h_ms")]
    ideal = bs / (max(medians) / 1e3) if cuda else None
    yard = engine.graph_yardstick() if cuda else {"fwd_gpu_ms": None, "yardstick_error": "cpu"}
    fwd_ms = stages["forward_ms"]["median"]
    per_sample = flops.bytes_per_sample(engine.model_cfg, engine.shape, engine.d2h_mode)
    flop = flops.flops_per_sample(engine.model_cfg, engine.shape)

    regime_class = share = None
    if cuda and yard["fwd_gpu_ms"] is not None:
        share = regime.launch_share(fwd_ms, yard["fwd_gpu_ms"])
        regime_class = regime.classify(stages["h2d_ms"]["median"], fwd_ms, yard["fwd_gpu_ms"], stages["d2h_ms"]["median"])

    metrics: dict[str, Any] = {
        "device": "cuda" if cuda else "cpu",
        "execution": engine.execution,
        "d2h_mode": engine.d2h_mode,
        "copies": "timed" if cuda else "skipped (cpu: no host-device copy)",
        "timing": "cuda_events" if cuda else "perf_counter",
        "samples_measured": samples,
        "batches": num_batches,
        "trials": len(serial_rates),
        "trials_s": trials_s,
        "timed_from": timed_from,  # epoch seconds: the window of the timed trials (overlap of patterns)
        "timed_to": timed_to,
        "ci_target": rule.target,
        "ci_target_met": stop_reason == "target_met",
        "stop_reason": stop_reason,
        # headline: serial samples/s (median of trials) and its 95% CI
        "samples_per_s": serial_ci["median"],
        "samples_per_s_ci": serial_ci,
        "serial_samples_per_s": serial_ci["median"],
        "pipelined_samples_per_s": pipe_ci["median"] if pipe_ci else None,
        "pipelined_samples_per_s_ci": pipe_ci,
        "ideal_samples_per_s": ideal,
        "pipelined_vs_ideal": (pipe_ci["median"] / ideal) if pipe_ci and ideal else None,
        "pipelined_vs_serial": (pipe_ci["median"] / serial_ci["median"]) if pipe_ci else None,
        "trial_samples_per_s": {"serial": serial_rates, "pipelined": pipe_rates},
        **stages,
        "fwd_eager_ms": fwd_ms if engine.execution == "eager" else None,
        "fwd_ms": fwd_ms,
        "fwd_gpu_ms": yard["fwd_gpu_ms"],
        "yardstick_error": yard["yardstick_error"],
        "launch_overhead_share": share,
        "regime": regime_class,
        "h2d_bytes_per_batch": engine.pool.batch_bytes if cuda else 0,
        "d2h_bytes_per_batch": engine.d2h_bytes if cuda else 0,
        "h2d_gbps": _gbps(engine.pool.batch_bytes, stages["h2d_ms"]["median"]) if cuda else None,
        "d2h_gbps": _gbps(engine.d2h_bytes, stages["d2h_ms"]["median"]) if cuda else None,
        "flops_per_sample": flop,
        "h2d_bytes_per_sample": per_sample["h2d"],
        "d2h_bytes_per_sample": per_sample["d2h"],
        "pool_mb": engine.pool.nbytes / 2**20,
        "pool_batches": engine.pool.num_batches,
        "pool_pinned": engine.pool.pinned,
        "pool_fill_s": engine.pool_fill_s,
        "pool_pages": engine.pool_pages,
        "parameters": engine.parameters,
        "first_call_s": engine.first_call_s,
        "compile_s": engine.compile_s,
        "compile_break_even_samples": None,
        "peak_gpu_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
        "telemetry": {**(telemetry.summary() if mode != "off" else empty()), "when": mode},
        "launch_cpu": launch_cpu,
        "launch_cpu_node": cpu_node(launch_cpu),
    }
    if engine.compile_s is not None:
        metrics.update(_break_even(spec, device, engine, fwd_ms))
    return metrics


def _break_even(spec: dict[str, Any], device: torch.device, engine: Engine, compiled_fwd_ms: float) -> dict[str, Any]:
    """Samples after which compiling paid off, against the eager forward of the same model."""
    eager = Engine({**spec, "test": {**spec["test"], "execution": "eager", "compile_model": False}}, device)
    eager.warmup(3)
    eager_fwd = percentiles(eager.serial_pass(max(8, SLOTS))["fwd"])["median"]
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
