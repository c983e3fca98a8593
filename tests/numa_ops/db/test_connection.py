"""One writer at a time: reads wait for a load (or any writer), loads wait for a reader, each up to its limit."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import duckdb
import pytest
from numa_ops import db as numa_db
from numa_ops import regressions

from tests.numa_ops.records import record

# Another process with the database open to write: as a load does (under the store's lock), or without the lock
# (an analyst's duckdb shell). It holds the file until its stdin closes.
_WRITER = """
import sys, duckdb
from filelock import FileLock
db, take_lock = sys.argv[1], sys.argv[2] == "1"
lock = FileLock(db + ".lock")
if take_lock:
    lock.acquire()
con = duckdb.connect(db)
print("holding", flush=True)
sys.stdin.read()
con.close()
"""


@contextmanager
def writer_holding(db, take_lock=True):
    """A process holding ``db`` open read-write until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db), "1" if take_lock else "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        yield proc
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0


def waits_for_writer(db, read, take_lock=True):
    """Start ``read`` while another process writes ``db``; check it waits, then finishes once the writer lets go."""
    with ThreadPoolExecutor(1) as pool:
        with writer_holding(db, take_lock):
            with pytest.raises(duckdb.IOException, match="lock"):  # what a plain read-only connection meets meanwhile
                duckdb.connect(str(db), read_only=True)
            pending = pool.submit(read)
            wait([pending], timeout=0.5)
            assert not pending.done(), pending.exception()  # still waiting for the writer, not failed
        return pending.result(timeout=120)


def _night_stored(db):
    verdict = {"night": "n1", "baseline": None, "config_key": "k", "config": "c", "tonight_mean": 1.0,
               "tonight_low": 1.0, "tonight_high": 1.0, "baseline_mean": None, "baseline_low": None,
               "baseline_high": None, "change": None, "verdict": "new", "error": None}
    regressions.save_verdicts("nightly_sweep", [verdict], True, db)


@pytest.mark.parametrize("take_lock", [True, False], ids=["load", "writer-without-lock"])
def test_reads_wait_for_a_writer_in_another_process(tmp_path, take_lock):
    db = tmp_path / "db.duckdb"
    _night_stored(db)
    assert waits_for_writer(db, lambda: regressions.last_accepted_night("nightly_sweep", before="n2", database=db),
                            take_lock) == "n1"
    assert waits_for_writer(db, lambda: numa_db.query("SELECT count(*) FROM regressions", database=db),
                            take_lock) == [(1,)]


@pytest.mark.parametrize("take_lock", [True, False], ids=["load", "writer-without-lock"])
def test_a_read_held_up_past_its_wait_fails_clearly(tmp_path, take_lock):
    db = tmp_path / "db.duckdb"
    _night_stored(db)
    with writer_holding(db, take_lock):
        with pytest.raises(numa_db.StoreBusyError) as exc:
            regressions.last_accepted_night("nightly_sweep", before="n2", database=db, lock_timeout_s=0.2)
        assert (str(db) in str(exc.value) and f"lock file {db}.lock" in str(exc.value)
                and "nothing was read" in str(exc.value))
        with pytest.raises(numa_db.StoreBusyError):
            numa_db.query("SELECT 1", database=db, lock_timeout_s=0.2)
    assert regressions.last_accepted_night("nightly_sweep", before="n2", database=db) == "n1"  # free again


def test_a_load_waits_for_a_reader(folder, db, write_record):
    write_record(folder, record("f1.a"))
    numa_db.load_runs([folder], db)
    write_record(folder, record("f1.b"))
    with numa_db.read_connection(db) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (1,)
        with pytest.raises(numa_db.StoreBusyError, match="held by another load"):
            numa_db.load_runs([folder], db, lock_timeout_s=0.2)
    assert numa_db.load_runs([folder], db)["inserted"] == 1  # the lock is let go with the connection


def test_reading_a_missing_database_says_so_and_leaves_no_lock_file(tmp_path):
    db = tmp_path / "none" / "db.duckdb"
    with pytest.raises(duckdb.Error, match="does not exist"):
        with numa_db.read_connection(db):
            pass
    assert not (tmp_path / "none").exists()
