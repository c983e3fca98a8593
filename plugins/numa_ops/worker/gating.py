"""Gated GPU timing: hold the stream busy while the CPU enqueues, so an event pair measures GPU time only.

An event recorded on an idle stream completes at once: the interval to the next event then holds the
time the CPU took to enqueue the work between them (kernel launches of an eager forward, the setup
of a copy), not just the GPU's. A spin kernel (``torch.cuda._sleep``) put on the stream first and
sized to outlast that enqueueing keeps the GPU busy until all the work is queued: the events then
bracket work that runs back to back. The CPU's issue cost is timed apart (``perf_counter``).

A gate that was too short shows: the enqueue took longer than its spin. Such batches are counted
(``gate_misses``) and the spin is lengthened for the next trial.
"""

from __future__ import annotations

import math

import torch

SLACK_MS = 0.03  # added to every spin: the spin kernel's own launch, and a margin
GROWTH = 1.5  # a spin is this many times the enqueue time it must cover


class SpinGate:
    """Spin kernels of a given length in ms on the current stream, calibrated on this GPU."""

    def __init__(self, device: torch.device, stream: torch.cuda.Stream):
        self.device, self.stream = device, stream
        self.cycles_per_ms = self._calibrate()

    def _calibrate(self) -> float:
        """GPU clock cycles per ms of ``_sleep``: the fastest of a few (a spin is at least as long as asked)."""
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        best = 0.0
        with torch.cuda.stream(self.stream):
            for cycles in (200_000, 1_000_000, 1_000_000, 1_000_000):
                torch.cuda._sleep(cycles)  # the first pair also loads the kernel
                e0.record()
                torch.cuda._sleep(cycles)
                e1.record()
                e1.synchronize()
                ms = e0.elapsed_time(e1)
                if ms > 0:
                    best = max(best, cycles / ms)
        return best or 1.5e6

    def spin(self, ms: float) -> None:
        """Enqueue a spin of about ``ms`` on the current stream."""
        if ms > 0:
            torch.cuda._sleep(max(1, int(ms * self.cycles_per_ms)))


def spin_for(issue_ms: list[float]) -> float:
    """The spin that covers an enqueue of these recent durations: GROWTH x their high end, plus slack."""
    if not issue_ms:
        return 1.0
    ordered = sorted(issue_ms)
    high = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return GROWTH * high + SLACK_MS


def copies_per_event(copy_ms: float, window_ms: float = 5.0, lo: int = 8, hi: int = 256) -> int:
    """How many back-to-back copies one event pair brackets: enough for ``window_ms`` of copying."""
    if copy_ms <= 0:
        return hi
    return max(lo, min(hi, math.ceil(window_ms / copy_ms)))
