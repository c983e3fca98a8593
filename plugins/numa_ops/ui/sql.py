"""Read-only SQL on the results for the UI: the published copy of the DuckDB file (``db/snapshot``), opened
read-only with the file system, extension loading and configuration changes disabled, one SELECT at a time,
with a row limit and a time limit. It never waits for a load, nor holds one up."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from filelock import FileLock, Timeout

from numa_ops import settings
from numa_ops.db import connection, snapshot

DATABASE_DOC = settings.REPO_ROOT / "docs" / "database.md"
MAX_ROWS = 10_000
DEFAULT_ROWS = 500
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 60.0
SANDBOX = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}
ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class QueryError(ValueError):
    """A query refused or failed; the message says why, for the page."""


class NotPublishedError(RuntimeError):
    """No read-only copy of the results exists yet, and a load holds the database."""


@dataclass(frozen=True)
class Preset:
    """An example query of ``docs/database.md``: its leading comment as the title, and the SQL."""

    title: str
    sql: str


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool  # more rows than the limit: only the first ``limit`` are here
    seconds: float


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


def check_statement(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but one SELECT (or EXPLAIN) statement, with a message that says so."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"the query does not parse: {exc}") from None
    if len(statements) != 1:
        raise QueryError(f"one statement at a time, please (got {len(statements)})")
    kind = statements[0].type
    if kind not in ALLOWED:
        raise QueryError(f"refused: only SELECT queries run here (statement type: {kind.name}); "
                         "the results are read-only")


def run_query(sql: str, limit: int = DEFAULT_ROWS, timeout_s: float = DEFAULT_TIMEOUT_S,
              database: Path | None = None) -> QueryResult:
    """Run ``sql`` on the published copy; at most ``limit`` rows, interrupted after ``timeout_s`` seconds."""
    if not sql.strip():
        raise QueryError("empty query")
    limit = max(1, min(int(limit), MAX_ROWS))
    timeout_s = max(0.1, min(float(timeout_s), MAX_TIMEOUT_S))
    con = duckdb.connect(str(published_copy(database)), read_only=True, config=SANDBOX)
    timed_out = threading.Event()

    def interrupt() -> None:
        timed_out.set()
        con.interrupt()

    timer = threading.Timer(timeout_s, interrupt)
    start = time.monotonic()
    try:
        check_statement(con, sql)
        timer.start()
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        rows = cursor.fetchmany(limit + 1)
    except duckdb.Error as exc:
        if timed_out.is_set():
            raise QueryError(f"stopped after the time limit of {timeout_s:g} s; narrow the query") from None
        raise QueryError(f"{type(exc).__name__}: {exc}") from None
    finally:
        timer.cancel()
        con.close()
    return QueryResult(columns, [tuple(r) for r in rows[:limit]], len(rows) > limit, time.monotonic() - start)
