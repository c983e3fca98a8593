"""Shared fixtures: a tiny experiment config and private outputs/configs folders per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Subprocesses started by tests (``python -c``, ``python -m numa_ops``) import the package too.
# Airflow must never touch the user's ~/airflow from the tests; each test process (pytest-xdist's workers
# inherit the first process's environment) has an Airflow home, and so a metadata database, of its own.
if os.environ.get("PYTEST_XDIST_WORKER") or "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(
        prefix=f"numa-lab-airflow-{os.environ.get('PYTEST_XDIST_WORKER', '')}")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "plugins"), str(REPO),
                                                         os.environ.get("PYTHONPATH")]))
TINY = """
description: a model small enough to measure in a second on two CPU cores
vit_configs:
  - {name: tiny, patch_size: 8, depth: 1, heads: 2, dim: 32, mlp_dim: 64, num_classes: 10}
  - {name: tiny2, patch_size: 8, depth: 2, heads: 2, dim: 48, mlp_dim: 96, num_classes: 10}
hardware:
  gpu_ids: all
  numa_nodes: [0]
test:
  num_samples: 16
  batch_size: 4
  tensor_shape: [3, 32, 32]
  memory_size_mb: 1
  compile_model: false
  timeout_s: 120
  warmup_batches: 1
  max_trial_time_s: 30
  min_trial_s: 0.05
  max_trials: 9          # noisy pilots get 9 trials: the median's interval then leaves out the extremes
  intra_op_threads: 1    # steady when several phases' workers share two cores
max_workers: 1
"""


@pytest.fixture
def configs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped configs plus ``tiny.yaml``, as ``NUMA_LAB_CONFIGS``."""
    target = tmp_path / "configs"
    shutil.copytree(REPO / "include" / "configs", target)
    (target / "tiny.yaml").write_text(TINY)
    monkeypatch.setenv("NUMA_LAB_CONFIGS", str(target))
    return target


@pytest.fixture
def outputs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private outputs folder, as ``NUMA_LAB_OUTPUTS``."""
    target = tmp_path / "outputs"
    target.mkdir()
    monkeypatch.setenv("NUMA_LAB_OUTPUTS", str(target))
    return target


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first: the two-node guest, then Airflow end to end; with two test processes
    (``./numa-lab test``) the rest fill in beside them instead of waiting behind them at the end."""
    def rank(item: pytest.Item) -> int:
        return 0 if item.get_closest_marker("numa_vm") else 1 if item.get_closest_marker("integration") else 2

    items.sort(key=rank)  # stable: files keep their order within a rank


def live_workers(outputs: Path) -> list[str]:
    """The worker processes (``pgrep -af``) measuring into ``outputs``."""
    out = subprocess.run(["pgrep", "-af", "numa_ops.worker"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(outputs) in line]
