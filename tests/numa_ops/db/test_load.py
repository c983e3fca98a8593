"""Loading run records: idempotent, set-based, quarantining what is not a record."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
from numa_ops import db as numa_db
from numa_ops import results

from tests.numa_ops.records import record


def test_load_is_idempotent(folder, db, write_record, run_rows):
    write_record(folder, record("f1.a"))
    write_record(folder, record("f1.b"))
    assert numa_db.load_runs([folder], db)["inserted"] == 2
    again = numa_db.load_runs([folder], db)
    assert again["inserted"] == 0 and again["unchanged"] == 2 and again["total_rows"] == 2
    write_record(folder, record("f1.c"))
    assert numa_db.load_runs([folder], db)["inserted"] == 1
    assert [r[0] for r in run_rows(db)] == ["f1.a", "f1.b", "f1.c"]


def test_topology_snapshot_per_folder(folder, db, write_record):
    write_record(folder, record("f1.a"))
    results.write_json_atomic(folder / "topology.json",
                              {"host": "h", "nodes": [{}], "gpus": [], "notes": ["one NUMA node"]})
    numa_db.load_runs([folder], db)
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT folder, host, numa_nodes, notes FROM topology").fetchall() == [
            ("f1", "h", 1, "one NUMA node")]


def test_failed_row_is_replaced_but_success_never_is(folder, db, write_record, run_rows):
    write_record(folder, record("f1.a", success=False))
    write_record(folder, record("f1.b", samples_per_s=100.0))
    numa_db.load_runs([folder], db)
    assert numa_db.load_runs([folder], db)["rechecked_failed"] == 0  # the same failed record again changes nothing
    write_record(folder, record("f1.a", samples_per_s=50.0))  # the failed run measured again
    write_record(folder, record("f1.b", samples_per_s=999.0))  # a completed result must not change
    counts = numa_db.load_runs([folder], db)
    assert counts["rechecked_failed"] == 1
    assert run_rows(db) == [("f1.a", True, 50.0), ("f1.b", True, 100.0)]


def test_columns_come_from_the_record(folder, db, write_record):
    write_record(folder, record("f1.a", environment={"host": "h1", "binding": {"numactl": "numactl --cpunodebind=0",
                                                                              "mems_allowed": "0"}}))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT host, binding, mems_allowed, height, forward_ms_median, record->>'$.lane' "
                          "FROM runs").fetchone()
    assert row == ("h1", "numactl --cpunodebind=0", "0", 32, 3.0, "cpu-cpu0-mem0")


def test_two_loads_at_once_store_each_run_once(folder, db, write_record, run_rows):
    for i in range(50):
        write_record(folder, record(f"f1.r{i:02d}"))
    code = (
        "import sys; from pathlib import Path; from numa_ops import db as numa_db; "
        f"numa_db.load_runs([Path({str(folder)!r})], Path({str(db)!r}))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert len(run_rows(db)) == 50


def test_busy_store_fails_clearly(folder, db, write_record):
    from filelock import FileLock

    write_record(folder, record("f1.a"))
    with FileLock(str(db) + ".lock"):
        try:
            numa_db.load_runs([folder], db, lock_timeout_s=0.2)
        except numa_db.StoreBusyError as exc:
            assert "held by another load" in str(exc)
        else:
            raise AssertionError("the load did not wait for the lock")
    assert numa_db.load_runs([folder], db)["inserted"] == 1  # a later load catches up


def test_older_database_gains_new_columns(folder, db, write_record):
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, success BOOLEAN, samples_per_s DOUBLE)")
        con.execute("INSERT INTO runs VALUES ('old', true, 1.0)")
    write_record(folder, record("f1.a", metrics={"samples_per_s": 5.0, "regime": "launch-bound"}))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT run_id, regime FROM runs ORDER BY run_id").fetchall() == [
            ("f1.a", "launch-bound"), ("old", None)]


def test_trials_table_one_row_per_trial_and_mode(folder, db, write_record):
    write_record(folder, record("f1.a", metrics={"samples_per_s": 10.0,
                                                 "trial_samples_per_s": {"serial": [9.0, 10.0, 11.0],
                                                                         "pipelined": [12.0]}}))
    numa_db.load_runs([folder], db)
    numa_db.load_runs([folder], db)  # again: no duplicates
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT mode, count(*), avg(samples_per_s) FROM trials GROUP BY mode "
                           "ORDER BY mode").fetchall()
    assert rows == [("pipelined", 1, 12.0), ("serial", 3, 10.0)]


def test_unreadable_and_foreign_files_are_quarantined_the_rest_loads(folder, db, write_record, run_rows):
    write_record(folder, record("f1.a"))
    (folder / "runs" / "f1.cut.json").write_text('{"run_id": "f1.cut", "succ')  # a file cut short
    (folder / "runs" / "f1.list.json").write_text("[1, 2]")  # JSON, but not a record
    (folder / "runs" / "f1.bin.json").write_bytes(b"\xff\xfe{}")  # not text
    # Python reads it, DuckDB not
    (folder / "runs" / "f1.sur.json").write_text('{"run_id": "f1.sur\\ud800", "success": true}')
    counts = numa_db.load_runs([folder], db)
    assert counts["inserted"] == 1 and [r[0] for r in run_rows(db)] == ["f1.a"]
    quarantined = sorted(p.name for p in (folder / "quarantine").glob("*.json"))
    assert quarantined == ["f1.bin.json", "f1.cut.json", "f1.list.json", "f1.sur.json"]
    assert "not a run record" in (folder / "quarantine" / "f1.list.json.reason.txt").read_text()
    assert "unreadable run file" in (folder / "quarantine" / "f1.cut.json.reason.txt").read_text()


def test_a_run_in_two_folders_is_stored_once_and_keeps_its_whole_record(write_record, tmp_path):
    db = tmp_path / "db.duckdb"
    write_record(tmp_path / "f1", record("r.a", folder="f1", samples_per_s=1.0))
    write_record(tmp_path / "f2", record("r.a", folder="f2", samples_per_s=2.0))
    assert numa_db.load_runs([tmp_path / "f1", tmp_path / "f2"], db)["inserted"] == 1
    with duckdb.connect(str(db), read_only=True) as con:
        folder_, rec = con.execute("SELECT folder, record FROM runs").fetchone()
    assert folder_ == "f2" and json.loads(rec) == record("r.a", folder="f2", samples_per_s=2.0)


def test_trials_table_of_an_older_database_loses_its_key_but_not_its_rows(folder, db, write_record):
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE trials (run_id VARCHAR, trial INTEGER, mode VARCHAR, samples_per_s DOUBLE, "
                    "PRIMARY KEY (run_id, trial, mode))")
        con.execute("INSERT INTO trials VALUES ('old', 0, 'serial', 1.0)")
    write_record(folder, record("f1.a", metrics={"samples_per_s": 10.0,
                                                 "trial_samples_per_s": {"serial": [9.0, 11.0]}}))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT run_id, count(*) FROM trials GROUP BY run_id ORDER BY run_id").fetchall() == [
            ("f1.a", 2), ("old", 1)]
        assert not con.execute("SELECT * FROM duckdb_constraints() WHERE table_name = 'trials'").fetchall()
