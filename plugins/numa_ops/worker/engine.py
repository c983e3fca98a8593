"""The engine of one run: host pool, model, buffers and streams built once, and the passes it times.

- a **serial** pass (the headline): batch by batch, H2D, forward, D2H, the stream synchronized after
  each batch; samples/s from the wall clock, with short CPU-speed control samples taken beside it;
- a **pipelined** pass: H2D, compute and D2H on three streams with two buffer slots, so a batch's copy
  overlaps the previous batch's forward, as a production pipeline runs;
- a **stage** pass: every stage of every batch **gated** (``worker.gating``): a spin kernel holds the
  stream while the CPU enqueues the stage, so its event pair measures GPU time only; the CPU's issue
  time of each stage is timed apart. Each execution mode's own forward is timed this way;
- a **copy micro-pass**: back-to-back copies from the bound pool (many per event pair), so ``h2d_gbps``
  compares with a raw copy loop of the same size.

On the CPU there is no copy: only the forward is timed (``perf_counter``). :mod:`numa_ops.worker.measure`
runs the passes as trials and puts the run's metrics together.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch

from numa_ops.config import TestConfig, VitConfig
from numa_ops.worker.gating import SLACK_MS, SpinGate, copies_per_event, spin_for
from numa_ops.worker.launch_thread import control_rate
from numa_ops.worker.metric_types import CopyPassJson, PoolPagesJson
from numa_ops.worker.model import build_model
from numa_ops.worker.pages import placement_proof
from numa_ops.worker.pool import HostPool

SLOTS = 2
STAGES = ("h2d", "forward", "d2h")
CONTROL_EVERY_S = 0.025  # a control sample inside the serial pass this often
CONTROL_SAMPLE_OPS = 100  # its length (well under a millisecond)
_MISS_SLACK = SLACK_MS / 2  # an enqueue this close to its spin's end counts as a gate miss
Forward = Callable[[], tuple[torch.Tensor, ...]]


def _nvtx(name: str, cuda: bool):
    return torch.cuda.nvtx.range(name) if cuda else nullcontext()


def _graph_forward(model: torch.nn.Module, static_in: torch.Tensor) -> Forward:
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
    """Everything one run needs, built once: pool, model, buffers, streams, events, forwards per slot."""

    def __init__(
        self,
        model: VitConfig,
        test: TestConfig,
        device: torch.device,
        placement_mode: str = "process",
        pool_node: int = 0,
        pool: HostPool | None = None,
    ):
        """``pool_node``: where the host pool goes in ``pool`` placement (in ``process`` placement numactl has put
        the whole worker, pool included, on its node already; ``pool_node`` only names it). ``pool``: a pool made
        by the caller (a paired run's first arm), used instead of making one."""
        self.test, self.vit, self.device = test, model, device
        self.cuda = device.type == "cuda"
        self.batch_size, self.shape = test.batch_size, list(test.tensor_shape)
        self.d2h_mode = test.d2h_mode
        execution = "compile" if test.execution == "eager" and test.compile_model else test.execution
        if execution == "cuda_graph" and not self.cuda:
            raise ValueError("test.execution=cuda_graph needs a CUDA device")
        self.execution = execution
        self.placement_mode = placement_mode
        self.pool_node = pool_node

        t0 = time.perf_counter()
        where = {"node": self.pool_node} if self.placement_mode == "pool" else {}
        self.pool = pool or HostPool(test.memory_size_mb, self.batch_size, self.shape,
                                     pinned=self.cuda and test.pinned_memory, **where)
        self.pool_fill_s = time.perf_counter() - t0
        self.pool_pages = placement_proof(self.pool.data.data_ptr(), self.pool_node)
        self.model = build_model(self.vit, self.shape, self.d2h_mode).to(device).eval()
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self._make_buffers()
        self.compile_s: float | None = None
        self.first_call_s: float | None = None
        if self.cuda:
            self._make_streams()
        self.spins = {"h2d": 2.0, "forward": 20.0, "d2h": 2.0}  # ms, until measured in warm-up
        self.gate_misses = {k: 0 for k in STAGES}
        self.gated_batches = 0
        self.forwards = self._build_forwards()

    def _make_buffers(self) -> None:
        """Each slot's input on the device, and its outputs on the device and on the host (the model's real shapes)."""
        device = self.device
        self.dev_in = [torch.empty(self.pool.batch_shape, device=device) for _ in range(SLOTS)]
        with torch.inference_mode():
            probe = self.model(self.dev_in[0].normal_())
        self.out_shapes = [tuple(t.shape) for t in probe]
        self.dev_out = [[torch.empty(s, device=device) for s in self.out_shapes] for _ in range(SLOTS)]
        self.host_out = [[torch.empty(s, pin_memory=self.cuda) for s in self.out_shapes] for _ in range(SLOTS)]
        self.d2h_bytes = sum(math.prod(s) * 4 for s in self.out_shapes)

    def _make_streams(self) -> None:
        """Streams and events, made once: none is created inside a timed pass."""
        device = self.device
        self.stream = torch.cuda.Stream(device)
        self.s_in, self.s_comp, self.s_out = (torch.cuda.Stream(device) for _ in range(3))
        self.h2d_done, self.comp_done, self.d2h_done = ([torch.cuda.Event() for _ in range(SLOTS)] for _ in range(3))
        self.stage_events = [torch.cuda.Event(enable_timing=True) for _ in range(6)]
        self.gate: SpinGate | None = None

    def close(self) -> None:
        """Give back what the pool holds outside torch's allocator (a registered, bound pool)."""
        self.pool.close()

    def use_buffers(
        self, pool: HostPool, host_out: list[list[torch.Tensor]] | None, pool_pages: PoolPagesJson
    ) -> None:
        """Copy from ``pool`` and into ``host_out`` (each slot's D2H destinations; None: keep the current ones) from
        the next batch on: a paired memory arm switched in between trials."""
        if pool.batch_shape != self.pool.batch_shape:
            raise ValueError(f"a pool of batches {pool.batch_shape} cannot stand in for {self.pool.batch_shape}")
        self.pool, self.pool_pages = pool, pool_pages
        if host_out is not None:
            if [[tuple(t.shape) for t in slot] for slot in host_out] != [list(self.out_shapes)] * SLOTS:
                raise ValueError("the D2H destinations must match the model's outputs, slot by slot")
            self.host_out = host_out

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

    def _forward_into(self, k: int) -> None:
        """The forward of slot ``k``, its outputs written into the slot's output buffers."""
        for dst, src in zip(self.dev_out[k], self.forwards[k](), strict=True):
            dst.copy_(src)

    def _d2h(self, k: int) -> None:
        for dst, src in zip(self.host_out[k], self.dev_out[k], strict=True):
            dst.copy_(src, non_blocking=self.cuda)

    def warmup(self, batches: int) -> None:
        """Run every path once (serial, pipelined, gated stages) and size the gates' spins."""
        batches = max(batches, SLOTS)
        with torch.inference_mode():
            for i in range(batches):
                k = i % SLOTS
                self.dev_in[k].copy_(self.pool.batch(i), non_blocking=self.cuda)
                self._forward_into(k)
                self._d2h(k)
            if self.cuda:
                torch.cuda.synchronize(self.device)
                self.gate = SpinGate(self.device, self.stream)
                self.pipelined_pass(batches)
                self.serial_pass(batches)
                first = self.stage_pass(max(batches, 5))  # with generous spins: what does each stage's enqueue take?
                self.spins = {k: spin_for(first["issue"][k]) for k in STAGES}
                self.gate_misses = {k: 0 for k in STAGES}
                self.gated_batches = 0

    # -- passes -----------------------------------------------------------------------------
    def serial_pass(
        self, num_batches: int, issue: dict[str, list[float]] | None = None, control: list[float] | None = None
    ) -> float:
        """Batch after batch, each synchronized before the next; returns the wall time in seconds.

        ``issue``: lists to append each stage's CPU issue time to (ms): the enqueue as production makes
        it, into an idle GPU (a pageable copy's call includes its staging through the CPU).
        ``control``: a list to append short CPU-speed control samples to, taken between batches every
        ``CONTROL_EVERY_S``; their time is left out of the pass's.
        """
        cuda, clock = self.cuda, time.perf_counter
        aside, next_control = 0.0, 0.0
        with torch.inference_mode(), (torch.cuda.stream(self.stream) if cuda else nullcontext()):
            start = clock()
            for i in range(num_batches):
                if control is not None and clock() >= next_control:
                    c = clock()
                    control.append(control_rate(1, CONTROL_SAMPLE_OPS))
                    next_control = clock() + CONTROL_EVERY_S
                    aside += clock() - c
                c0 = clock()
                if cuda:
                    self.dev_in[0].copy_(self.pool.batch(i), non_blocking=True)
                c1 = clock()
                self._forward_into(0)  # on the CPU there is no host-device copy to make or time
                c2 = clock()
                self._d2h(0)
                c3 = clock()
                if cuda:
                    self.stream.synchronize()
                if issue is not None:
                    issue["h2d"].append((c1 - c0) * 1e3)
                    issue["forward"].append((c2 - c1) * 1e3)
                    issue["d2h"].append((c3 - c2) * 1e3)
            return clock() - start - aside

    def stage_pass(self, num_batches: int) -> dict[str, dict[str, list[float]]]:
        """Every stage of every batch: its GPU time (gated events) and its CPU issue time, in ms.

        The issue times here are taken while the GPU spins (they size the gates); enqueueing behind a
        busy GPU costs more than into an idle one, so the run's issue times come from the serial pass.
        """
        gpu: dict[str, list[float]] = {k: [] for k in STAGES}
        issue: dict[str, list[float]] = {k: [] for k in STAGES}
        if not self.cuda:
            with torch.inference_mode():
                for _ in range(num_batches):
                    c0 = time.perf_counter()
                    self._forward_into(0)
                    self._d2h(0)
                    ms = (time.perf_counter() - c0) * 1e3
                    gpu["forward"].append(ms)
                    issue["forward"].append(ms)
            return {"gpu": gpu, "issue": issue}
        ev, s, gate, spins = self.stage_events, self.stream, self.gate, self.spins
        assert gate is not None, "warmup() sizes the gate first"
        gate_h2d = self.pool.pinned  # a pageable copy is staged by the CPU: the call itself waits, no gate
        clock = time.perf_counter
        with torch.inference_mode(), torch.cuda.stream(s):
            for i in range(num_batches):
                host = self.pool.batch(i)
                if gate_h2d:
                    gate.spin(spins["h2d"])
                c0 = clock()
                ev[0].record(s)
                with _nvtx("h2d", True):
                    self.dev_in[0].copy_(host, non_blocking=True)
                ev[1].record(s)
                c1 = clock()
                gate.spin(spins["forward"])
                c2 = clock()
                ev[2].record(s)
                with _nvtx("forward", True):
                    self._forward_into(0)
                ev[3].record(s)
                c3 = clock()
                gate.spin(spins["d2h"])
                c4 = clock()
                ev[4].record(s)
                with _nvtx("d2h", True):
                    self._d2h(0)
                ev[5].record(s)
                c5 = clock()
                ev[5].synchronize()
                for k, (a, b), (t0, t1) in zip(
                    STAGES, ((0, 1), (2, 3), (4, 5)), ((c0, c1), (c2, c3), (c4, c5)), strict=True
                ):
                    gpu[k].append(ev[a].elapsed_time(ev[b]))
                    issue[k].append((t1 - t0) * 1e3)
                    if (k != "h2d" or gate_h2d) and issue[k][-1] > spins[k] - _MISS_SLACK:
                        self.gate_misses[k] += 1
        self.gated_batches += num_batches
        for k in STAGES:  # a gate that was too short in this pass is lengthened for the next
            if (k != "h2d" or gate_h2d) and sum(x > spins[k] - _MISS_SLACK for x in issue[k]) > 0.05 * num_batches:
                self.spins[k] = max(spins[k], 1.2 * max(issue[k]) + SLACK_MS)
        return {"gpu": gpu, "issue": issue}

    def pipelined_pass(self, num_batches: int) -> float:
        """H2D, compute and D2H on their own streams, two slots deep; returns the wall time."""
        s_in, s_comp, s_out = self.s_in, self.s_comp, self.s_out
        h2d_done, comp_done, d2h_done = self.h2d_done, self.comp_done, self.d2h_done
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
                    self._forward_into(k)
                    comp_done[k].record(s_comp)
                with torch.cuda.stream(s_out), _nvtx("d2h", True):
                    s_out.wait_event(comp_done[k])
                    self._d2h(k)
                    d2h_done[k].record(s_out)
        torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    def copy_bandwidth(self, reps: int = 11) -> CopyPassJson:
        """Back-to-back copies between the bound pool and the GPU, many per event pair, gated: GB/s."""
        if not self.cuda:
            return CopyPassJson(h2d_gbps=None, d2h_gbps=None)
        assert self.gate is not None, "warmup() sizes the gate first"
        s, e0, e1 = self.stream, self.stage_events[0], self.stage_events[1]
        out = CopyPassJson(gate_misses=0)
        pinned = self.pool.pinned

        def h2d(j: int) -> None:
            self.dev_in[j % SLOTS].copy_(self.pool.batch(j), non_blocking=True)

        def d2h(j: int) -> None:
            for dst, src in zip(self.host_out[j % SLOTS], self.dev_out[j % SLOTS], strict=True):
                dst.copy_(src, non_blocking=True)

        with torch.inference_mode(), torch.cuda.stream(s):
            for name, copy, nbytes, gated in (
                ("h2d", h2d, self.pool.batch_bytes, pinned),
                ("d2h", d2h, self.d2h_bytes, True),
            ):
                e0.record(s)
                copy(0)
                e1.record(s)
                e1.synchronize()
                count = copies_per_event(e0.elapsed_time(e1))
                spin, times, issues = 0.5 + 0.05 * count, [], []
                for _ in range(reps):
                    if gated:
                        self.gate.spin(spin)
                    c0 = time.perf_counter()
                    e0.record(s)
                    for j in range(count):
                        copy(j)
                    e1.record(s)
                    issue = (time.perf_counter() - c0) * 1e3
                    e1.synchronize()
                    if gated and issue > spin - _MISS_SLACK:
                        out["gate_misses"] += 1
                    times.append(e0.elapsed_time(e1) / count)
                    issues.append(issue)
                    spin = spin_for(issues)
                ms = float(np.median(times))
                out.update({f"{name}_copy_ms": ms, f"{name}_gbps": nbytes / (ms / 1e3) / 1e9 if ms > 0 else None,
                            f"{name}_copies_per_event": count, f"{name}_bytes": nbytes})
        return out
