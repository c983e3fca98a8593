"""One worker process: started in its own session, its output read line by line, its whole group ended.

What :class:`numa_ops.supervise.LaneSupervisor` builds on, as Airflow's ``SubprocessHook`` sits under
``BashOperator``: this module knows processes, not runs.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

KILL_GRACE_S = 5.0
POLL_S = 0.2  # how often an idle worker's reader wakes (to check deadlines)


def kill_group(proc: subprocess.Popen, grace_s: float = KILL_GRACE_S) -> str:
    """End a process's whole group: SIGTERM, then SIGKILL after ``grace_s``; says how it ended."""
    if proc.poll() is not None:
        return "already exited"
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already exited"
    try:
        proc.wait(timeout=grace_s)
        return "SIGTERM"
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        return "SIGKILL"


def exit_reason(returncode: int) -> str:
    """Why a worker ended, in words: the signal that killed it, or its exit code."""
    if returncode < 0:
        try:
            return f"worker killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"worker killed by signal {-returncode}"
    return f"worker exited with code {returncode}"


class WorkerProcess:
    """A command run in a session of its own, stdout and stderr merged and read on a thread of their own."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path):
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
            bufsize=1,
            cwd=cwd,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self, poll_s: float = POLL_S) -> Iterator[str]:
        """Each line the process prints, without its newline; ``""`` every ``poll_s`` while it prints nothing.
        Ends when its output closes."""
        while True:
            try:
                line = self._lines.get(timeout=poll_s)
            except queue.Empty:
                line = ""
            if line is None:
                return
            yield line

    def kill_group(self) -> str:
        """End the process and everything it started (see :func:`kill_group`)."""
        return kill_group(self.proc)

    def wait(self) -> int:
        """Wait for the process to end and its output to be read; its return code."""
        returncode = self.proc.wait()
        self._reader.join(timeout=5)
        return returncode

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.rstrip("\n"))
        self._lines.put(None)
