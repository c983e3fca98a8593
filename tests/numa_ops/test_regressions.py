"""The regressions table: which night is the baseline of which."""

from __future__ import annotations

import duckdb
import pytest
from numa_ops import db as numa_db
from numa_ops import regressions, results

from tests.numa_ops.records import record


def _write(folder, rec):
    results.write_json_atomic(folder / "runs" / f"{rec['run_id']}.json", rec)


def _rows(db):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT run_id, success, samples_per_s FROM runs ORDER BY run_id").fetchall()


def _accepted_night(db, night, phase="nightly_sweep"):
    verdict = {"night": night, "baseline": None, "config_key": "k", "config": "c", "tonight_mean": 1.0,
               "tonight_low": 1.0, "tonight_high": 1.0, "baseline_mean": None, "baseline_low": None,
               "baseline_high": None, "change": None, "verdict": "new", "error": None}
    regressions.save_verdicts(phase, [verdict], True, db)


def test_checking_an_older_night_again_keeps_the_later_baseline(tmp_path):
    db = tmp_path / "db.duckdb"
    n1, n2, n3 = (f"nightly_2026112{d}T020000_abc12{d}_gpu-a" for d in (1, 2, 3))
    _accepted_night(db, n1)
    _accepted_night(db, n2)
    _accepted_night(db, n1)  # an Airflow clear of night 1's compare: its verdicts are stored last
    assert regressions.last_accepted_night("nightly_sweep", before=n3, database=db) == n2
    assert regressions.last_accepted_night("nightly_sweep", before=n1, database=db) is None  # only nights before it
    assert regressions.last_accepted_night("nightly_sweep", before=n2, database=db) == n1


def test_nights_without_a_time_in_their_name_are_ordered_by_their_runs(tmp_path):
    db = tmp_path / "db.duckdb"
    for night, day, ok in (("late", "28", False), ("early", "27", True)):  # every run of "late" failed
        _write(tmp_path / night, record(f"{night}.a", folder=night, success=ok,
                                        started_at=f"2026-11-{day}T02:00:00+00:00"))
    numa_db.load_runs([tmp_path / "late", tmp_path / "early"], db)
    _accepted_night(db, "late")
    _accepted_night(db, "early")  # checked again after the later night
    assert regressions.last_accepted_night("nightly_sweep", before="tonight", database=db) == "late"
    assert regressions.last_accepted_night("nightly_sweep", before="early", database=db) is None


def test_nights_known_only_by_their_verdicts_are_ordered_by_their_first_check(tmp_path):
    db = tmp_path / "db.duckdb"
    _accepted_night(db, "n1")
    _accepted_night(db, "n2")
    _accepted_night(db, "n1")
    assert regressions.last_accepted_night("nightly_sweep", before="n3", database=db) == "n2"
    assert regressions.last_accepted_night("nightly_sweep", before="n1", database=db) is None


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        pytest.param({"verdict": "regression", "config": "m (eager, 32 px, batch 4)", "change": -0.1,
                      "ratio_low": 0.85, "ratio_high": 0.95, "mde": 0.04, "basis": "between processes"},
                     "regression     m (eager, 32 px, batch 4): -10.0% [-15.0%, -5.0%], MDE 4.0% (between processes)",
                     id="interval"),
        pytest.param({"verdict": "regression", "config": "m", "error": "boom"}, "regression     m:  (boom)",
                     id="failed-tonight"),
        pytest.param({"verdict": "not detectable", "config": "m", "change": 0.02, "basis": "one process"},
                     "not detectable m: +2.0% (one process)", id="no-interval"),
    ],
)
def test_a_night_verdict_says_itself_in_one_line(fields, line):
    assert regressions.NightVerdict(night="n1", **fields).line() == line


def test_a_night_verdict_keeps_its_json_and_a_row_stored_by_hand_loads():
    verdict = regressions.NightVerdict(night="n1", config="c", verdict="new", processes=2)
    assert regressions.NightVerdict.from_json(verdict.to_json()) == verdict
    assert set(verdict.to_json()) == set(regressions.REGRESSION_COLUMNS)
    assert regressions.NightVerdict.from_json({"night": "n1"}).verdict is None  # every key but night may be absent
