"""The DuckDB file and its locks: one writer at a time, readers that wait for a running load.

Loads take a file lock beside the database, so two loads never race for DuckDB's single-writer lock:
the second waits, then catches up. Reads take the same lock (``read_connection``): while a load
writes, DuckDB refuses even a read-only connection, so a report waits for the load instead of failing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from filelock import FileLock, Timeout

from numa_ops import paths

DB_NAME = "numa_lab.duckdb"
LOCK_TIMEOUT_S = 600


class StoreBusyError(RuntimeError):
    """Another process held the database for longer than the wait allowed."""


def db_path(base: Path | None = None) -> Path:
    """The DuckDB file (``outputs/numa_lab.duckdb``)."""
    return (base or paths.outputs_dir()) / DB_NAME


def lock_path(database: Path) -> str:
    """The file lock that loads and reads of ``database`` take."""
    return str(database) + ".lock"


@contextmanager
def write_lock(database: Path, lock_timeout_s: float, unwritten: str) -> Iterator[None]:
    """Hold ``database``'s file lock for a write; past ``lock_timeout_s``, ``StoreBusyError`` says ``unwritten``."""
    try:
        with FileLock(lock_path(database), timeout=lock_timeout_s):
            yield
    except Timeout:
        raise StoreBusyError(
            f"{database} is held by another load (or a report reading it) for over {lock_timeout_s:.0f} s; {unwritten}"
        ) from None


def _busy(database: Path, lock_timeout_s: float) -> StoreBusyError:
    return StoreBusyError(
        f"{database} stayed locked by another process (a load writing it, or another reader) for over "
        f"{lock_timeout_s:.0f} s (lock file {lock_path(database)}); nothing was read, try again once it is done"
    )


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _connect_read_only(database: Path, deadline: float, lock_timeout_s: float) -> duckdb.DuckDBPyConnection:
    """A read-only connection, retried while another process (without our lock) holds DuckDB's own lock."""
    pause = 0.05
    while True:
        try:
            return duckdb.connect(str(database), read_only=True)
        except duckdb.Error as exc:
            if not _is_lock_conflict(exc) or time.monotonic() + pause > deadline:
                if _is_lock_conflict(exc):
                    raise _busy(database, lock_timeout_s) from exc
                raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


_open_reads = threading.local()  # per thread: database file -> the read connection open on it


@contextmanager
def read_connection(database: Path | None = None,
                    lock_timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the database, held under the loads' file lock; both released on exit.

    While another process has the file open to write, DuckDB refuses even a read-only connection
    ("Could not set lock on file"): this waits for the lock instead, and then for DuckDB's own lock
    (a writer that does not take ours, e.g. an analyst's ``duckdb`` shell), up to ``lock_timeout_s`` in
    all, and raises ``StoreBusyError`` past it. Keep the block to the reads: loads wait while it is open.
    A database whose folder cannot hold the lock file (read-only) is read without it. Within a block, a
    second ``read_connection`` to the same file in the same thread gets the same connection (a second lock
    would wait for the first).
    """
    database = Path(database or db_path())
    held = _open_reads.__dict__.setdefault("held", {})
    key = os.path.realpath(database)
    if key in held:
        yield held[key]
        return
    deadline = time.monotonic() + lock_timeout_s
    lock: FileLock | None = None
    if database.exists():  # a missing one: DuckDB says so below, and no lock file (nor folder) is made for it
        lock = FileLock(lock_path(database), timeout=lock_timeout_s)
        try:
            lock.acquire()
        except Timeout:
            raise _busy(database, lock_timeout_s) from None
        except OSError:  # not ours to write: no load of ours can be writing there either
            lock = None
    try:
        con = _connect_read_only(database, deadline, lock_timeout_s)
        held[key] = con
        try:
            yield con
        finally:
            del held[key]
            con.close()
    finally:
        if lock is not None:
            lock.release()


def query(sql: str, params: list[Any] | None = None, database: Path | None = None,
          lock_timeout_s: float = LOCK_TIMEOUT_S) -> list[tuple]:
    """Run a read-only query on the database (waiting for a running load, see ``read_connection``)."""
    with read_connection(database, lock_timeout_s) as con:
        return con.execute(sql, params or []).fetchall()


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the database has a table ``name`` (one a later numa-lab step creates may not be there yet)."""
    return bool(
        con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0]
    )
