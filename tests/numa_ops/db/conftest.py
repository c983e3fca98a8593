"""Fixtures of the db tests: a run folder and a database file per test, writing a record into a folder, and
reading rows back from the database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from numa_ops import results


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The test's run folder (``f1``; its ``runs`` folder is made by the first record written)."""
    return tmp_path / "f1"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The test's database file (not made until a load or a connection makes it)."""
    return tmp_path / "db.duckdb"


def _write_record(folder: Path, rec: dict[str, Any]) -> None:
    results.write_json_atomic(folder / "runs" / f"{rec['run_id']}.json", rec)


def _run_rows(db: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT run_id, success, samples_per_s FROM runs ORDER BY run_id").fetchall()


def _query_rows(db: Path, sql: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(db), read_only=True) as con:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@pytest.fixture
def write_record() -> Callable[[Path, dict[str, Any]], None]:
    """Write a record (as JSON) into a run folder's ``runs``, as the worker does."""
    return _write_record


@pytest.fixture
def run_rows() -> Callable[[Path], list[tuple[Any, ...]]]:
    """The ``runs`` table's run_id, success and samples_per_s, by run_id."""
    return _run_rows


@pytest.fixture
def query_rows() -> Callable[[Path, str], list[dict[str, Any]]]:
    """The rows of a query on the database, each as a dict by column name."""
    return _query_rows
