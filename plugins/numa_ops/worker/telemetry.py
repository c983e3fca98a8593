"""GPU telemetry from NVML, sampled in the background during the timed region.

The sampler is a separate process, not a thread: a Python thread that wakes every few
milliseconds competes for the GIL with the thread that launches the GPU's kernels, and a
launch-bound forward then measures the sampler, not the model. The process is started from the
bound worker, so it inherits the worker's CPU and memory binding.

No NVML (or no GPU): every field is None and the run goes on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from numa_ops.worker.metric_types import TelemetryJson

FIELDS = ("gpu_util_pct", "mem_used_mb", "pcie_tx_mbps", "pcie_rx_mbps", "sm_clock_mhz", "power_w", "temp_c")


def empty() -> TelemetryJson:
    """Telemetry of a run with no NVML: every field null."""
    return TelemetryJson(source=None, samples=0, **{f"{f}_{s}": None for f in FIELDS for s in ("mean", "max")})


def summarize(samples: list[dict[str, float]]) -> TelemetryJson:
    """Mean and max of every field over ``samples`` (None where never read)."""
    if not samples:
        return empty()
    fields: dict[str, float | None] = {}
    for name in FIELDS:
        values = [s[name] for s in samples if s.get(name) is not None]
        fields[f"{name}_mean"] = sum(values) / len(values) if values else None
        fields[f"{name}_max"] = max(values) if values else None
    return TelemetryJson(source="nvml", samples=len(samples), **fields)


def sample_forever(index: int, interval_s: float) -> None:
    """Print one JSON sample per line until SIGTERM (the sampler process's body)."""
    import pynvml

    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(index)
    readers = {
        "gpu_util_pct": lambda: pynvml.nvmlDeviceGetUtilizationRates(h).gpu,
        "mem_used_mb": lambda: pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20,
        "pcie_tx_mbps": lambda: pynvml.nvmlDeviceGetPcieThroughput(h, pynvml.NVML_PCIE_UTIL_TX_BYTES) / 1024,
        "pcie_rx_mbps": lambda: pynvml.nvmlDeviceGetPcieThroughput(h, pynvml.NVML_PCIE_UTIL_RX_BYTES) / 1024,
        "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "power_w": lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000,
        "temp_c": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
    }
    print(json.dumps({"ready": True}), flush=True)
    while not stop:
        sample: dict[str, float | None] = {"t": time.time()}
        for name, read in readers.items():
            try:
                sample[name] = float(read())
            except Exception:  # noqa: BLE001 - a counter this GPU does not support stays null
                sample[name] = None
        print(json.dumps(sample), flush=True)
        time.sleep(interval_s)


class Telemetry:
    """Context manager: an NVML sampler process runs while the block runs."""

    def __init__(self, nvml_index: int | None, interval_s: float = 0.1, cpus: set[int] | None = None):
        self.index = nvml_index
        self.cpus = cpus  # where the sampler runs: kept off the launching thread's core
        self.interval_s = interval_s
        self._proc: subprocess.Popen | None = None
        self._samples: list[dict[str, float]] = []
        self.error: str | None = None

    def __enter__(self) -> Telemetry:
        if self.index is None:
            return self
        try:
            import pynvml  # noqa: F401 - only to know whether the sampler can run
        except ImportError:
            self.error = "pynvml not installed"
            return self
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from numa_ops.worker.telemetry import sample_forever; sample_forever({int(self.index)}, "
                f"{float(self.interval_s)})",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if self.cpus:
            try:
                os.sched_setaffinity(self._proc.pid, self.cpus)
            except OSError:
                pass  # it exited already: said below
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline()  # wait until it samples, so the timed region is covered
        if not first:
            self.error = (self._proc.stderr.read() if self._proc.stderr else "")[-500:] or "sampler exited"
            self._proc.wait()
            self._proc = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self._proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, _ = self._proc.communicate()
        for line in out.splitlines():
            try:
                self._samples.append(json.loads(line))
            except json.JSONDecodeError:
                continue

    def summary(self) -> TelemetryJson:
        """Mean and max of every field (all None without NVML)."""
        out = summarize(self._samples)
        out["interval_s"] = self.interval_s
        out["mode"] = "process"
        if self.error:
            out["error"] = self.error
        return out
