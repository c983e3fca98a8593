"""Read-only SQL on the results for the UI: the published copy of the DuckDB file (``db/snapshot``), queried in
a process of its own (``ui/sql_sandbox``), capped in memory, threads, rows, bytes and time, one SELECT at a time.
It never waits for a load, nor holds one up.

The time limit covers the whole request: the process is killed when it runs out, whatever it was doing.
At most ``MAX_QUERIES`` run at once; one more is answered "busy" at once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from numa_ops import settings
from numa_ops.db import connection, snapshot
from numa_ops.ui import sql_sandbox

DATABASE_DOC = settings.REPO_ROOT / "docs" / "database.md"
MAX_ROWS = 10_000
DEFAULT_ROWS = 500
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 60.0
PAGE_BYTES = 4 * 2**20  # the rows the SQL page shows (as JSON); the HTML around them at most a few times more
CSV_BYTES = 16 * 2**20  # the rows a CSV answer holds
MEMORY_MB = 256  # DuckDB's memory_limit in the query's process
PROCESS_MB = 1024  # the query process's data memory (RLIMIT_DATA): result chunks live outside memory_limit
THREADS = 2
MAX_QUERIES = 2
_SANDBOX_SCRIPT = Path(sql_sandbox.__file__)
_running = threading.BoundedSemaphore(MAX_QUERIES)


class QueryError(ValueError):
    """A query refused or failed; the message says why, for the page."""


class NotPublishedError(RuntimeError):
    """No read-only copy of the results exists yet, and a load holds the database."""


class BusyError(RuntimeError):
    """``MAX_QUERIES`` queries are running already."""


@dataclass(frozen=True)
class Preset:
    """An example query of ``docs/database.md``: its leading comment as the title, and the SQL."""

    title: str
    sql: str


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    cut: str | None  # why rows were left out (the row limit or the byte cap), as a sentence; None if none were
    seconds: float

    @property
    def truncated(self) -> bool:
        return self.cut is not None


def presets(doc: Path = DATABASE_DOC) -> list[Preset]:
    """The example queries of ``docs/database.md`` (its ```sql blocks), none if the page is not shipped."""
    if not doc.is_file():
        return []
    found = []
    for sql in re.findall(r"```sql\n(.*?)```", doc.read_text(), flags=re.S):
        first = sql.strip().splitlines()[0]
        title = first.lstrip("- ").strip() if first.startswith("--") else first[:60]
        found.append(Preset(title, sql.strip()))
    return found


def published_copy(database: Path | None = None) -> Path:
    """The read-only copy to query; made once here if missing, but only if no load holds the database."""
    database = Path(database or connection.db_path())
    copy = snapshot.snapshot_path(database)
    if copy.is_file():
        return copy
    if not database.is_file():
        raise NotPublishedError(f"no results yet: {database.name} does not exist (run a phase first)")
    try:
        with FileLock(connection.lock_path(database), timeout=0):
            return snapshot.publish(database)
    except Timeout:
        raise NotPublishedError("the results are being loaded right now; try again in a moment") from None


def server_paths() -> list[list[str]]:
    """The absolute paths an answer must not show, each with the name it is shown as instead."""
    names = {str(settings.outputs_dir().resolve()): "<outputs>", str(settings.REPO_ROOT): "<numa-lab>",
             str(Path.home()): "~"}
    if os.environ.get("AIRFLOW_HOME"):
        names[str(Path(os.environ["AIRFLOW_HOME"]).resolve())] = "<airflow home>"
    return [[path, name] for path, name in names.items() if path not in ("", "/")]


def _answer(
    stdout: bytes, max_bytes: int, returncode: int | None
) -> tuple[list[str], list[tuple[Any, ...]], str | None]:
    """The sandbox's answer lines as (columns, rows, cut); QueryError with its sentence if it refused."""
    if len(stdout) > max_bytes + 2**20:  # the sandbox keeps to its cap; never trust a runaway answer
        raise QueryError(f"refused: the answer passed the {max_bytes / 2**20:g} MB cap")
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    for line in lines:
        if isinstance(line, dict) and "error" in line:
            raise QueryError(line["error"])
    if not lines or "columns" not in lines[0] or "cut" not in lines[-1]:
        raise QueryError(f"the query's process ended without an answer (exit status {returncode})")
    return lines[0]["columns"], [tuple(row) for row in lines[1:-1]], lines[-1]["cut"]


def run_query(sql: str, limit: int = DEFAULT_ROWS, timeout_s: float = DEFAULT_TIMEOUT_S,
              database: Path | None = None, max_bytes: int = PAGE_BYTES) -> QueryResult:
    """Run ``sql`` on the published copy in a process of its own: at most ``limit`` rows and ``max_bytes``
    bytes of rows (as JSON), killed after ``timeout_s`` seconds from now."""
    start = time.monotonic()
    if not sql.strip():
        raise QueryError("empty query")
    limit = max(1, min(int(limit), MAX_ROWS))
    timeout_s = max(0.1, min(float(timeout_s), MAX_TIMEOUT_S))
    request = {"sql": sql, "database": str(published_copy(database)), "limit": limit,
               "max_bytes": max(1024, min(int(max_bytes), CSV_BYTES)), "memory_mb": MEMORY_MB,
               "process_mb": PROCESS_MB, "threads": THREADS, "names": server_paths()}
    if not _running.acquire(blocking=False):
        raise BusyError(f"{MAX_QUERIES} queries are running already; try again in a moment")
    try:
        proc = subprocess.Popen([sys.executable, "-I", str(_SANDBOX_SCRIPT)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            stdout, _ = proc.communicate(json.dumps(request).encode(),
                                         timeout=max(0.01, timeout_s - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise QueryError(f"stopped after the time limit of {timeout_s:g} s; narrow the query") from None
    finally:
        _running.release()
    columns, rows, cut = _answer(stdout, request["max_bytes"], proc.returncode)
    return QueryResult(columns, rows, cut, time.monotonic() - start)
