"""Every successful write publishes the read-only copy that the UI's SQL page reads: still under the file lock,
once the write connection is closed."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import duckdb
import numa_ops.db
import pytest
from filelock import FileLock, Timeout
from numa_ops import db as numa_db
from numa_ops import regressions, results

from tests.numa_ops.records import record


@pytest.fixture
def published(monkeypatch):
    """A stand-in for numa_ops.db.snapshot that records, for each publish, whether the lock was held and the
    database could be opened read-only (so no write connection was open)."""
    calls = []

    def publish(database):
        try:
            FileLock(numa_db.lock_path(database), timeout=0).acquire()
            held = False
        except Timeout:
            held = True
        duckdb.connect(str(database), read_only=True).close()
        calls.append((database, held))
        return database

    fake = types.ModuleType("numa_ops.db.snapshot")
    fake.__spec__ = importlib.machinery.ModuleSpec("numa_ops.db.snapshot", None)
    fake.publish = publish
    monkeypatch.setitem(sys.modules, "numa_ops.db.snapshot", fake)
    monkeypatch.setattr(numa_ops.db, "snapshot", fake, raising=False)
    return calls


def test_a_load_publishes_once_under_its_lock(folder, db, published):
    results.write_json_atomic(folder / "runs" / "f1.a.json", record("f1.a"))
    numa_db.load_runs([folder], db)
    assert published == [(db, True)]


def test_stored_verdicts_are_published_too(tmp_path, published):
    db = tmp_path / "db.duckdb"
    verdict = {"night": "n1", "baseline": None, "config_key": "k", "config": "c", "tonight_mean": 1.0,
               "tonight_low": 1.0, "tonight_high": 1.0, "baseline_mean": None, "baseline_low": None,
               "baseline_high": None, "change": None, "verdict": "new", "error": None}
    regressions.save_verdicts("nightly_sweep", [verdict], True, db)
    assert published == [(db, True)]


def test_a_load_refused_for_its_lock_publishes_nothing(tmp_path, published):
    db = tmp_path / "db.duckdb"
    with FileLock(numa_db.lock_path(db)), pytest.raises(numa_db.StoreBusyError):
        numa_db.load_runs([], db, lock_timeout_s=0.1)
    assert published == []
