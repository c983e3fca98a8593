"""The schema: settings older records left out are filled at load (old rows too), or once in the base views."""

from __future__ import annotations

import duckdb
import pytest
from numa_ops import db as numa_db
from numa_ops import results

from tests.numa_ops.records import record


@pytest.mark.parametrize(("given", "stored"), [(None, "eager"), ("compile", "compile")], ids=["older-record", "compile"])
def test_execution_is_filled_at_load(tmp_path, given, stored):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    rec = record("f1.a")
    if given:
        rec["metrics"]["execution"] = given
    results.write_json_atomic(folder / "runs" / "f1.a.json", rec)
    numa_db.load_runs([folder], db)
    assert numa_db.query("SELECT execution FROM runs", database=db) == [(stored,)]


def test_rows_stored_before_execution_was_filled_get_it(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, success BOOLEAN, execution VARCHAR)")
        con.execute("INSERT INTO runs VALUES ('old', true, NULL), ('old_compiled', true, 'compile')")
    numa_db.load_runs([folder], db)
    assert numa_db.query("SELECT run_id, execution FROM runs ORDER BY run_id", database=db) == [
        ("old", "eager"), ("old_compiled", "compile")]


def test_base_views_fill_host_memory_and_placement_mode_of_older_records(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    results.write_json_atomic(folder / "runs" / "f1.a.json", record("f1.a"))
    results.write_json_atomic(folder / "runs" / "f1.b.json", record("f1.b", success=False))
    numa_db.load_runs([folder], db)
    assert numa_db.query("SELECT pinned_memory, placement_mode FROM runs", database=db) == [(None, None)] * 2
    assert numa_db.query("SELECT run_id, pinned_memory, placement_mode FROM filled_runs ORDER BY run_id", database=db) == [
        ("f1.a", True, "process"), ("f1.b", True, "process")]
    assert numa_db.query("SELECT run_id FROM measured_runs", database=db) == [("f1.a",)]
    assert numa_db.query("SELECT count(*) FROM gpu_runs", database=db) == [(0,)]
