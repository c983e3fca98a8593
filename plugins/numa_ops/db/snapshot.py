"""The read-only copy of the DuckDB file that the UI's SQL page queries.

A load publishes it at its end, under the loads' file lock and once its write connection is closed: the
closed file is copied beside the database under a temporary name, flushed to disk, and renamed over the
previous copy in one step. A query never waits for a load, nor a load for a query: a reader that has the
old copy open keeps reading it (its inode) until it closes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def snapshot_path(database: Path) -> Path:
    """The published copy of ``database`` (``numa_lab.duckdb`` -> ``numa_lab.snapshot.duckdb``)."""
    database = Path(database)
    return database.with_name(f"{database.stem}.snapshot{database.suffix}")


def publish(database: Path) -> Path:
    """Copy the closed ``database`` to :func:`snapshot_path` atomically; returns the snapshot's path.

    Call it with no write connection open (DuckDB checkpoints on close, so the file is the whole database).
    """
    database = Path(database)
    target = snapshot_path(database)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(database, temp)
        with open(temp, "rb+") as copy:
            os.fsync(copy.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return target
