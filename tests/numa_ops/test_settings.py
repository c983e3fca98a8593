"""Every NUMA_LAB_* variable is read through numa_ops.settings, at call time, with one default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from numa_ops import settings

PACKAGE = Path(settings.__file__).parent


@pytest.mark.parametrize(
    ("read", "variable", "value", "expected"),
    [
        (settings.max_runs, "NUMA_LAB_MAX_RUNS", "12", 12),
        (settings.min_free_mb, "NUMA_LAB_MIN_FREE_MB", "7", 7),
        (settings.startup_timeout_s, "NUMA_LAB_STARTUP_TIMEOUT_S", "2.5", 2.5),
        (settings.torch_threads_cap, "NUMA_LAB_TORCH_THREADS", "3", 3),
        (settings.fake_gpu, "NUMA_LAB_FAKE_GPU", "1", True),
        (settings.hosts, "NUMA_LAB_HOSTS", " gpu-a, ,gpu-b ", ["gpu-a", "gpu-b"]),
        (settings.nsys_override, "NUMA_LAB_NSYS", "/opt/nsys", "/opt/nsys"),
        (settings.numactl_override, "NUMA_LAB_NUMACTL", "off", "off"),
        (settings.worker_lane_started, "NUMA_LAB_LANE_STARTED", "12.5", 12.5),
        (settings.worker_binding, "NUMA_LAB_BINDING", "cpunodebind=0", "cpunodebind=0"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("NUMA_LAB_") else "",
)
def test_a_setting_follows_its_variable(monkeypatch, read, variable, value, expected):
    monkeypatch.setenv(variable, value)
    assert read() == expected


@pytest.mark.parametrize(
    ("read", "variable", "expected"),
    [
        (settings.max_runs, "NUMA_LAB_MAX_RUNS", settings.DEFAULT_MAX_RUNS),
        (settings.min_free_mb, "NUMA_LAB_MIN_FREE_MB", settings.DEFAULT_MIN_FREE_MB),
        (settings.startup_timeout_s, "NUMA_LAB_STARTUP_TIMEOUT_S", settings.DEFAULT_STARTUP_TIMEOUT_S),
        (settings.torch_threads_cap, "NUMA_LAB_TORCH_THREADS", 0),
        (settings.fake_gpu, "NUMA_LAB_FAKE_GPU", False),
        (settings.hosts, "NUMA_LAB_HOSTS", []),
        (settings.worker_lane_started, "NUMA_LAB_LANE_STARTED", 0.0),
        (settings.worker_binding, "NUMA_LAB_BINDING", "unknown"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("NUMA_LAB_") else "",
)
def test_an_unset_or_empty_variable_gives_the_default(monkeypatch, read, variable, expected):
    monkeypatch.setenv(variable, "")
    assert read() == expected
    monkeypatch.delenv(variable)
    assert read() == expected


def test_outputs_and_configs_follow_their_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMA_LAB_OUTPUTS", str(tmp_path / "out"))
    monkeypatch.setenv("NUMA_LAB_CONFIGS", str(tmp_path / "cfg"))
    assert settings.outputs_dir() == (tmp_path / "out").resolve()
    assert settings.configs_dir() == (tmp_path / "cfg").resolve()
    monkeypatch.delenv("NUMA_LAB_OUTPUTS")
    assert settings.outputs_dir() == settings.REPO_ROOT / "outputs"


def test_the_worker_profile_note_is_json(monkeypatch):
    monkeypatch.setenv("NUMA_LAB_PROFILE", '{"nsys": "on", "warning": "w"}')
    assert settings.worker_profile() == {"nsys": "on", "warning": "w"}
    monkeypatch.delenv("NUMA_LAB_PROFILE")
    assert settings.worker_profile() == {"nsys": "off", "warning": None}


def test_no_other_module_reads_a_numa_lab_variable():
    reads = re.compile(r"""environ(?:\.get)?[\[(]\s*["']NUMA_LAB_|getenv\(\s*["']NUMA_LAB_""")
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "settings.py" and reads.search(p.read_text())]
    assert offenders == []
