"""The UI's read-only copy of the database: published whole and atomically, beside the database; a reader of
the old copy keeps it while a new one replaces it."""

from __future__ import annotations

import duckdb
from numa_ops import db as numa_db
from numa_ops import results
from numa_ops.db import snapshot

from tests.numa_ops.records import record


def test_snapshot_is_beside_the_database(tmp_path):
    assert snapshot.snapshot_path(tmp_path / "numa_lab.duckdb") == tmp_path / "numa_lab.snapshot.duckdb"


def test_a_load_publishes_a_copy_with_its_rows(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "numa_lab.duckdb"
    results.write_json_atomic(folder / "runs" / "f1.a.json", record("f1.a"))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(snapshot.snapshot_path(db)), read_only=True) as con:
        assert con.execute("SELECT run_id FROM runs").fetchall() == [("f1.a",)]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_an_open_reader_keeps_the_old_copy_while_a_new_one_is_published(tmp_path):
    db = tmp_path / "numa_lab.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS v")
    old = duckdb.connect(str(snapshot.publish(db)), read_only=True)
    with duckdb.connect(str(db)) as con:
        con.execute("INSERT INTO t VALUES (2)")
    snapshot.publish(db)
    assert old.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    old.close()
    with duckdb.connect(str(snapshot.snapshot_path(db)), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 2
