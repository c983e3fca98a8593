"""Every ``NUMA_LAB_*`` environment variable numa-lab reads, in one place.

Each setting is read when it is asked for (tests and the lane supervisor change the environment at
run time), with its default written here once. Variables that the lane supervisor hands to its worker
(``WORKER_*`` names) are part of the supervisor-worker protocol: both sides use these names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Required, TypedDict

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_MAX_RUNS = 5000
DEFAULT_MIN_FREE_MB = 500
DEFAULT_STARTUP_TIMEOUT_S = 600.0

# set by the lane supervisor for its worker
WORKER_BINDING = "NUMA_LAB_BINDING"  # the numactl binding the worker runs under, as text
WORKER_PROFILE = "NUMA_LAB_PROFILE"  # JSON: the nsys session's note ({"nsys": ..., "warning": ...})
WORKER_LANE_STARTED = "NUMA_LAB_LANE_STARTED"  # epoch seconds the lane started (claims of shared-out runs)


def _text(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def configs_dir() -> Path:
    """Experiment YAML folder: ``NUMA_LAB_CONFIGS``, else ``include/configs`` in the repository."""
    return Path(_text("NUMA_LAB_CONFIGS") or REPO_ROOT / "include" / "configs").resolve()


def outputs_dir() -> Path:
    """Results folder: ``NUMA_LAB_OUTPUTS``, else ``outputs/`` in the repository."""
    return Path(_text("NUMA_LAB_OUTPUTS") or REPO_ROOT / "outputs").resolve()


def use_outputs_dir(path: Path) -> None:
    """Make ``path`` this process's outputs folder (and that of the processes it starts)."""
    os.environ["NUMA_LAB_OUTPUTS"] = str(path)


def cache_dir() -> Path:
    """``NUMA_LAB_CACHE``: where numa-lab keeps what it can rebuild (the Vega bundle a report inlines); else
    ``$XDG_CACHE_HOME/numa-lab`` or ``~/.cache/numa-lab``."""
    base = _text("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(_text("NUMA_LAB_CACHE") or Path(base) / "numa-lab")


def nsys_override() -> str | None:
    """``NUMA_LAB_NSYS``: the Nsight Systems binary to use instead of searching for one."""
    return _text("NUMA_LAB_NSYS")


def numactl_override() -> str | None:
    """``NUMA_LAB_NUMACTL``: the numactl binary to use; ``off`` means run without numactl."""
    return _text("NUMA_LAB_NUMACTL")


def hosts() -> list[str]:
    """``NUMA_LAB_HOSTS``: the Celery GPU hosts (comma-separated), in order; empty when unset."""
    return [h.strip() for h in os.environ.get("NUMA_LAB_HOSTS", "").split(",") if h.strip()]


def max_runs() -> int:
    """``NUMA_LAB_MAX_RUNS``: the largest plan allowed to start."""
    return int(_text("NUMA_LAB_MAX_RUNS") or DEFAULT_MAX_RUNS)


def min_free_mb() -> int:
    """``NUMA_LAB_MIN_FREE_MB``: free space the outputs folder needs before a plan starts."""
    return int(_text("NUMA_LAB_MIN_FREE_MB") or DEFAULT_MIN_FREE_MB)


def startup_timeout_s() -> float:
    """``NUMA_LAB_STARTUP_TIMEOUT_S``: how long a worker may take to import and initialise."""
    return float(_text("NUMA_LAB_STARTUP_TIMEOUT_S") or DEFAULT_STARTUP_TIMEOUT_S)


def torch_threads_cap() -> int:
    """``NUMA_LAB_TORCH_THREADS``: the most intra-op threads a worker may use (0: no cap)."""
    return int(_text("NUMA_LAB_TORCH_THREADS") or 0)


def fake_gpu() -> bool:
    """``NUMA_LAB_FAKE_GPU=1``: tests of multi-GPU scheduling measure on the CPU where CUDA is absent."""
    return os.environ.get("NUMA_LAB_FAKE_GPU") == "1"


def worker_binding() -> str:
    """In a worker: the binding its supervisor launched it under."""
    return _text(WORKER_BINDING) or "unknown"


class ProfileNote(TypedDict, total=False):
    """A supervisor's note on a worker's nsys session, kept in each of its records (``profile``): off or on, the
    binary and the report it was to write, a warning; after the worker, what nsys really left."""

    nsys: str  # every note but what nsys left, merged into it later
    warning: Required[str | None]
    nsys_binary: str
    report: str | None
    report_bytes: int
    raw_capture: str
    raw_capture_bytes: int


def worker_profile() -> ProfileNote:
    """In a worker: its supervisor's note on the nsys session."""
    return json.loads(_text(WORKER_PROFILE) or '{"nsys": "off", "warning": null}')


def worker_lane_started() -> float:
    """In a worker: when its lane started (epoch seconds; 0 when not given)."""
    return float(_text(WORKER_LANE_STARTED) or 0)
