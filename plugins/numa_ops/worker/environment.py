"""What a record says about where it ran: host, binding in effect, GPU, driver, versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, TypedDict

from numa_ops import settings
from numa_ops.record import Binding, Environment


def binding() -> Binding:
    """The CPUs and memory nodes this process may use, as the kernel reports them."""
    found: dict[str, str | None] = {"cpus_allowed": None, "mems_allowed": None}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                found["cpus_allowed"] = line.split(":", 1)[1].strip()
            elif line.startswith("Mems_allowed_list:"):
                found["mems_allowed"] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    found["numactl"] = settings.worker_binding()
    return Binding(**found)


class _GpuFacts(TypedDict):
    """What NVML says of the GPU (each None where NVML cannot say)."""

    driver: str | None
    gpu_name: str | None
    pci_bus_id: str | None


def _nvml(index: int | None) -> _GpuFacts:
    info = _GpuFacts(driver=None, gpu_name=None, pci_bus_id=None)
    if index is None:
        return info
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML: fields stay null
        return info
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        info["driver"] = _text(pynvml.nvmlSystemGetDriverVersion())
        info["gpu_name"] = _text(pynvml.nvmlDeviceGetName(handle))
        info["pci_bus_id"] = _text(pynvml.nvmlDeviceGetPciInfo(handle).busId)
    except Exception:  # noqa: BLE001
        pass
    finally:
        pynvml.nvmlShutdown()
    return info


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def environment(gpu_id: int | None) -> Environment:
    """Host, Python, torch, CUDA and GPU facts for a record."""
    import torch

    env = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cpu_model": _cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "binding": binding(),
        "vit_pytorch": _package_version("vit-pytorch"),
        "numactl_version": numactl_version(),
    }
    env.update(_nvml(gpu_id))
    if torch.cuda.is_available() and gpu_id is not None:
        env["gpu_name"] = env["gpu_name"] or torch.cuda.get_device_name(0)
    return Environment.model_validate(env)


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def numactl_version() -> str | None:
    """numactl's version (``numactl --version``, else the Debian package's); None when it is not installed."""
    if shutil.which("numactl") is None:
        return None
    for argv in (["numactl", "--version"], ["dpkg-query", "-W", "-f=${Version}", "numactl"]):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip().splitlines()[0]
    return "unknown"
