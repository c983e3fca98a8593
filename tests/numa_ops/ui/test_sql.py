"""The SQL page's engine: presets from docs/database.md, the published copy, and never waiting for a load."""

from __future__ import annotations

import duckdb
import pytest
from filelock import FileLock
from numa_ops.db import connection, snapshot
from numa_ops.ui import sql


def test_every_example_of_the_database_page_is_a_preset():
    found = sql.presets()
    assert len(found) >= 5 and found[1].title == "failed runs and why"
    assert all(p.sql.lstrip().startswith("--") for p in found)


def test_no_presets_where_the_page_is_not_shipped(tmp_path):
    assert sql.presets(tmp_path / "database.md") == []


def test_a_missing_copy_is_published_once_when_no_load_holds_the_database(outputs_dir):
    database = connection.db_path()
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE runs AS SELECT 1 AS v")
    assert sql.run_query("SELECT v FROM runs").rows == [(1,)]
    assert snapshot.snapshot_path(database).is_file()


def test_while_a_load_holds_the_database_it_says_so_and_does_not_wait(outputs_dir):
    database = connection.db_path()
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE runs AS SELECT 1 AS v")
    with FileLock(connection.lock_path(database)), pytest.raises(sql.NotPublishedError, match="being loaded"):
        sql.run_query("SELECT 1")


def test_a_published_copy_is_read_while_a_load_holds_the_database(outputs_dir):
    database = connection.db_path()
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE runs AS SELECT 1 AS v")
    snapshot.publish(database)
    with FileLock(connection.lock_path(database)), duckdb.connect(str(database)) as writer:
        writer.execute("INSERT INTO runs VALUES (2)")  # a load writing right now
        assert sql.run_query("SELECT count(*) FROM runs").rows == [(1,)]


def test_no_results_yet_says_so(outputs_dir):
    with pytest.raises(sql.NotPublishedError, match="no results yet"):
        sql.run_query("SELECT 1")
