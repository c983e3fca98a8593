"""GPU telemetry from NVML, sampled by a background thread during the timed region.

No NVML (or no GPU): every field is None and the run goes on. The thread is started from the
bound worker, so it runs on the bound node's CPUs like the rest of the process.
"""

from __future__ import annotations

import threading
from typing import Any

FIELDS = ("gpu_util_pct", "mem_used_mb", "pcie_tx_mbps", "pcie_rx_mbps", "sm_clock_mhz", "power_w", "temp_c")


def empty() -> dict[str, Any]:
    """Telemetry of a run with no NVML: every field null."""
    return {"source": None, "samples": 0, **{f"{f}_{s}": None for f in FIELDS for s in ("mean", "max")}}


class Telemetry:
    """Context manager: samples NVML every ``interval_s`` while the block runs."""

    def __init__(self, nvml_index: int | None, interval_s: float = 0.05):
        self.index = nvml_index
        self.interval_s = interval_s
        self.samples: dict[str, list[float]] = {f: [] for f in FIELDS}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: Any = None
        self._handle: Any = None

    def __enter__(self) -> Telemetry:
        if self.index is None:
            return self
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self._nvml = pynvml
        except Exception:  # noqa: BLE001 - no NVML: fields stay null
            self._nvml = None
            return self
        self._thread = threading.Thread(target=self._loop, name="numa-lab-telemetry", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass

    def _read(self, name: str, fn: Any) -> None:
        try:
            self.samples[name].append(float(fn()))
        except Exception:  # noqa: BLE001 - a counter this GPU does not support stays empty
            pass

    def _loop(self) -> None:
        nv, h = self._nvml, self._handle
        while not self._stop.is_set():
            self._read("gpu_util_pct", lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu)
            self._read("mem_used_mb", lambda: nv.nvmlDeviceGetMemoryInfo(h).used / 2**20)
            self._read("pcie_tx_mbps", lambda: nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_TX_BYTES) / 1024)
            self._read("pcie_rx_mbps", lambda: nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_RX_BYTES) / 1024)
            self._read("sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))
            self._read("power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000)
            self._read("temp_c", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
            self._stop.wait(self.interval_s)

    def summary(self) -> dict[str, Any]:
        """Mean and max of every field (None where never read)."""
        if self._nvml is None and self._thread is None:
            return empty()
        out: dict[str, Any] = {"source": "nvml", "samples": max(len(v) for v in self.samples.values())}
        for name, values in self.samples.items():
            out[f"{name}_mean"] = sum(values) / len(values) if values else None
            out[f"{name}_max"] = max(values) if values else None
        return out
