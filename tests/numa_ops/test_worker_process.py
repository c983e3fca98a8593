"""A worker process: its own session, its lines, its whole group ended, and why it exited."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from numa_ops.worker_process import WorkerProcess, exit_reason


@pytest.mark.parametrize(
    ("returncode", "reason"),
    [(0, "worker exited with code 0"), (3, "worker exited with code 3"),
     (-signal.SIGKILL, "worker killed by signal SIGKILL"), (-signal.SIGTERM, "worker killed by signal SIGTERM"),
     (-99, "worker killed by signal 99")],
    ids=["ok", "code", "sigkill", "sigterm", "unknown-signal"],
)
def test_exit_reason(returncode, reason):
    assert exit_reason(returncode) == reason


def test_lines_are_read_in_order_and_the_exit_code_kept(tmp_path):
    worker = WorkerProcess([sys.executable, "-c", "import sys; print('a'); print('b', file=sys.stderr); sys.exit(3)"],
                           dict(os.environ), tmp_path)
    assert [line for line in worker.lines() if line] == ["a", "b"]
    assert worker.wait() == 3


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_kill_group_ends_what_the_worker_started(tmp_path):
    script = ("import subprocess, sys, time; "
              "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
              "print(c.pid, flush=True); time.sleep(120)")
    worker = WorkerProcess([sys.executable, "-c", script], dict(os.environ), tmp_path)
    assert os.getpgid(worker.pid) == worker.pid  # a session (and process group) of its own
    grandchild = int(next(line for line in worker.lines() if line))
    assert _running(grandchild)
    assert worker.kill_group() == "SIGTERM"
    assert exit_reason(worker.wait()) == "worker killed by signal SIGTERM"
    deadline = time.monotonic() + 30
    while _running(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(grandchild)  # it went with the group
    assert worker.kill_group() == "already exited"
