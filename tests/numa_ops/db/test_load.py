from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import duckdb
import pytest
from numa_ops import db as numa_db
from numa_ops import regressions, results

from tests.numa_ops import planted
from tests.numa_ops.records import record


def _write(folder, rec):
    results.write_json_atomic(folder / "runs" / f"{rec['run_id']}.json", rec)


def _rows(db):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT run_id, success, samples_per_s FROM runs ORDER BY run_id").fetchall()


def test_load_is_idempotent(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    _write(folder, record("f1.a"))
    _write(folder, record("f1.b"))
    assert numa_db.load_runs([folder], db)["inserted"] == 2
    again = numa_db.load_runs([folder], db)
    assert again["inserted"] == 0 and again["unchanged"] == 2 and again["total_rows"] == 2
    _write(folder, record("f1.c"))
    assert numa_db.load_runs([folder], db)["inserted"] == 1
    assert [r[0] for r in _rows(db)] == ["f1.a", "f1.b", "f1.c"]


def test_topology_snapshot_per_folder(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    _write(folder, record("f1.a"))
    results.write_json_atomic(folder / "topology.json", {"host": "h", "nodes": [{}], "gpus": [], "notes": ["one NUMA node"]})
    numa_db.load_runs([folder], db)
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT folder, host, numa_nodes, notes FROM topology").fetchall() == [("f1", "h", 1, "one NUMA node")]


def test_failed_row_is_replaced_but_success_never_is(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    _write(folder, record("f1.a", success=False))
    _write(folder, record("f1.b", samples_per_s=100.0))
    numa_db.load_runs([folder], db)
    assert numa_db.load_runs([folder], db)["rechecked_failed"] == 0  # the same failed record again changes nothing
    _write(folder, record("f1.a", samples_per_s=50.0))  # the failed run measured again
    _write(folder, record("f1.b", samples_per_s=999.0))  # a completed result must not change
    counts = numa_db.load_runs([folder], db)
    assert counts["rechecked_failed"] == 1
    assert _rows(db) == [("f1.a", True, 50.0), ("f1.b", True, 100.0)]


def test_columns_come_from_the_record(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    _write(folder, record("f1.a", environment={"host": "h1", "binding": {"numactl": "numactl --cpunodebind=0", "mems_allowed": "0"}}))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT host, binding, mems_allowed, height, forward_ms_median, record->>'$.lane' FROM runs").fetchone()
    assert row == ("h1", "numactl --cpunodebind=0", "0", 32, 3.0, "cpu-cpu0-mem0")


def test_two_loads_at_once_store_each_run_once(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for i in range(50):
        _write(folder, record(f"f1.r{i:02d}"))
    code = (
        "import sys; from pathlib import Path; from numa_ops import db as numa_db; "
        f"numa_db.load_runs([Path({str(folder)!r})], Path({str(db)!r}))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert len(_rows(db)) == 50


def test_busy_store_fails_clearly(tmp_path):
    from filelock import FileLock

    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    _write(folder, record("f1.a"))
    with FileLock(str(db) + ".lock"):
        try:
            numa_db.load_runs([folder], db, lock_timeout_s=0.2)
        except numa_db.StoreBusyError as exc:
            assert "held by another load" in str(exc)
        else:
            raise AssertionError("the load did not wait for the lock")
    assert numa_db.load_runs([folder], db)["inserted"] == 1  # a later load catches up


def test_older_database_gains_new_columns(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, success BOOLEAN, samples_per_s DOUBLE)")
        con.execute("INSERT INTO runs VALUES ('old', true, 1.0)")
    _write(folder, record("f1.a", metrics={"samples_per_s": 5.0, "regime": "launch-bound"}))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT run_id, regime FROM runs ORDER BY run_id").fetchall() == [("f1.a", "launch-bound"), ("old", None)]


def _gpu(run_id, placement, rate, regime="transfer-bound", batch_size=4):
    model = {"name": "m", "patch_size": 8, "depth": 1, "heads": 2, "dim": 32, "mlp_dim": 64}
    rec = record(run_id, device="cuda", placement=placement, gpu_id=0, model=model,
                 metrics={"samples_per_s": rate, "h2d_gbps": rate / 10, "regime": regime, "execution": "eager"})
    rec["test"]["batch_size"] = batch_size
    return rec


def test_numa_penalty_view(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for i, spread in enumerate((1.0, 1.001)):  # two processes a side, 0.1% apart: an interval, and a tight one
        for rec in (_gpu(f"f1.a{i}", "local", 100.0 * spread), _gpu(f"f1.b{i}", "remote", 80.0 * spread),
                    _gpu(f"f1.c{i}", "local", 50.0 * spread, "launch-bound", 16),
                    _gpu(f"f1.d{i}", "remote", 45.0 * spread, "launch-bound", 16)):
            _write(folder, rec)
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT regime, throughput_penalty, status, local_processes, remote_processes, penalty_low, "
                           "penalty_high, mde FROM numa_penalty ORDER BY regime").fetchall()
    assert [(r[0], round(r[1], 3), r[2], r[3], r[4]) for r in rows] == [
        ("launch-bound", 0.1, "measured", 2, 2), ("transfer-bound", 0.2, "measured", 2, 2)]
    for _, penalty, _, _, _, low, high, mde in rows:
        assert low < penalty < high and 0 < mde < 0.01


def test_numa_penalty_with_one_process_a_side_gives_no_interval(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for rec in (_gpu("f1.a", "local", 100.0), _gpu("f1.b", "remote", 80.0)):
        _write(folder, rec)
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        (row,) = con.execute("SELECT throughput_penalty, penalty_low, penalty_high, mde, status FROM numa_penalty").fetchall()
        assert con.execute("SELECT count(*) FROM sensitivity_map").fetchone() == (0,)  # not a finding
    assert row[0] == pytest.approx(0.2) and row[1:4] == (None, None, None)
    assert row[4] == numa_db.ONE_PROCESS == "one process a side: no between-process interval (set test.repeats >= 2)"


def test_numa_penalty_pairs_runs_whose_regimes_differ(tmp_path):
    # The regime is a result: the local run came out launch-bound, its remote twin transfer-bound. Same config.
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    planted.write_penalty_runs(folder, 0.20, seed=0, regimes=("launch-bound", "transfer-bound"))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT regime, throughput_penalty, status FROM numa_penalty").fetchall()
        sens = con.execute("SELECT model_name, regime, median_penalty FROM sensitivity_map").fetchall()
    ((regime, penalty, status),) = rows
    assert status == "measured" and penalty == pytest.approx(0.20, abs=0.02)
    assert regime == "launch-bound, transfer-bound"
    ((model, sens_regime, sens_penalty),) = sens
    assert (model, sens_regime) == ("m", "launch-bound, transfer-bound") and sens_penalty == pytest.approx(penalty)


def test_numa_penalty_says_when_no_remote_node_exists(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    _write(folder, _gpu("f1.a", "local", 100.0))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        (row,) = con.execute("SELECT throughput_penalty, status FROM numa_penalty").fetchall()
    assert row[0] is None and row[1].startswith("no remote placement measured")


def test_analysis_views_answer_on_measured_runs(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    model = {"name": "m", "patch_size": 8, "depth": 1, "heads": 2, "dim": 32, "mlp_dim": 64}
    runs = [("local", 100.0, "eager"), ("remote", 90.0, "eager"), ("local", 150.0, "compile")]
    runs += [(place, rate * 1.001, execution) for place, rate, execution in runs]  # a second process of each
    for i, (place, rate, execution) in enumerate(runs):
        metrics = {"samples_per_s": rate, "regime": "transfer-bound", "execution": execution, "flops_per_sample": 10,
                   "h2d_ms": {"median": 1.0}, "forward_ms": {"median": 0.5}, "d2h_ms": {"median": 0.1},
                   "batch_ms": {"median": 1.6}, "fwd_gpu_ms": 0.4, "compile_speedup": 1.5 if execution == "compile" else None}
        _write(folder, record(f"f1.r{i}", device="cuda", placement=place, gpu_id=0, model=model, metrics=metrics,
                              lane=f"gpu0-cpu{i % 3}-mem{i % 3}"))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT model_name, round(median_penalty, 3) FROM sensitivity_map").fetchall() == [("m", 0.1)]
        h2d_share, launch = con.execute("SELECT h2d_share, launch_share FROM stage_breakdown WHERE execution = 'eager'").fetchone()
        assert round(h2d_share, 3) == 0.625 and round(launch, 3) == 0.2
        assert con.execute("SELECT first_compute_dominated_model FROM crossover WHERE execution = 'eager'").fetchone() == (None,)
        assert con.execute("SELECT forward_speedup FROM compile_speedup").fetchall() == [(1.5,)]
        assert con.execute("SELECT best_lane, execution FROM recommendations").fetchall() == [("gpu0-cpu2-mem2", "compile")]
        assert con.execute("SELECT count(*) FROM scaling").fetchone()[0] == 2


def test_trials_table_one_row_per_trial_and_mode(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    _write(folder, record("f1.a", metrics={"samples_per_s": 10.0, "trial_samples_per_s": {"serial": [9.0, 10.0, 11.0], "pipelined": [12.0]}}))
    numa_db.load_runs([folder], db)
    numa_db.load_runs([folder], db)  # again: no duplicates
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT mode, count(*), avg(samples_per_s) FROM trials GROUP BY mode ORDER BY mode").fetchall()
    assert rows == [("pipelined", 1, 12.0), ("serial", 3, 10.0)]


def _crossover(db, height=224):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT first_compute_dominated_model, crossover_flops_per_sample, crossover_parameters, "
            "last_transfer_dominated_model, crossover_flops_estimate, models FROM crossover WHERE height = ?", [height]
        ).fetchone()


def test_crossover_view_finds_the_planted_crossover(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    planted.write_crossover_runs(folder)
    numa_db.load_runs([folder], db)
    first, flops, params, last_copy, estimate, models = _crossover(db)
    # Compute (0.1 ms per 1e8 FLOPs) overtakes the copies (1.2 ms) at 1.2e9 FLOPs: between d8 and d16.
    assert (first, flops, params, last_copy, models) == ("d16", 16 * planted.FLOPS_PER_DEPTH, 16 * 10**6, "d8", 6)
    assert estimate == pytest.approx(planted.CROSSOVER_FLOPS, rel=1e-6)
    with duckdb.connect(str(db), read_only=True) as con:
        shares = con.execute("SELECT depth, h2d_share, forward_share FROM stage_breakdown ORDER BY depth").fetchall()
    assert [d for d, _, _ in shares] == list(planted.DEPTHS)
    h2d, fwd = [s[1] for s in shares], [s[2] for s in shares]
    assert all(a > b for a, b in zip(h2d, h2d[1:], strict=False)), "the H2D share falls with model size"
    assert all(a < b for a, b in zip(fwd, fwd[1:], strict=False)), "the compute share rises with model size"
    assert h2d[3] > fwd[3] and h2d[4] < fwd[4]  # the shares cross between d8 and d16 too


def test_one_noisy_small_model_does_not_move_the_crossover(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    planted.write_crossover_runs(folder)
    for i in range(3):  # d1 at 64 px looks compute-dominated (a disturbed measurement); d2..d8 do not
        planted.write(folder, planted.sized_run(f"f1.h64.d1.{i}", 1, gpu_ms=2.0, height=64))
    for depth in planted.DEPTHS[1:]:
        planted.write(folder, planted.sized_run(f"f1.h64.d{depth}", depth, height=64))
    numa_db.load_runs([folder], db)
    assert _crossover(db, 64)[:4] == _crossover(db, 224)[:4] == ("d16", 16 * planted.FLOPS_PER_DEPTH, 16 * 10**6, "d8")


def test_crossover_view_when_no_model_is_compute_dominated(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for depth in planted.DEPTHS[:4]:
        planted.write(folder, planted.sized_run(f"f1.d{depth}", depth))
    numa_db.load_runs([folder], db)
    assert _crossover(db) == (None, None, None, "d8", None, 4)


def test_unreadable_and_foreign_files_are_quarantined_the_rest_loads(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    _write(folder, record("f1.a"))
    (folder / "runs" / "f1.cut.json").write_text('{"run_id": "f1.cut", "succ')  # a file cut short
    (folder / "runs" / "f1.list.json").write_text("[1, 2]")  # JSON, but not a record
    (folder / "runs" / "f1.bin.json").write_bytes(b"\xff\xfe{}")  # not text
    (folder / "runs" / "f1.sur.json").write_text('{"run_id": "f1.sur\\ud800", "success": true}')  # Python reads it, DuckDB not
    counts = numa_db.load_runs([folder], db)
    assert counts["inserted"] == 1 and [r[0] for r in _rows(db)] == ["f1.a"]
    quarantined = sorted(p.name for p in (folder / "quarantine").glob("*.json"))
    assert quarantined == ["f1.bin.json", "f1.cut.json", "f1.list.json", "f1.sur.json"]
    assert "not a run record" in (folder / "quarantine" / "f1.list.json.reason.txt").read_text()
    assert "unreadable run file" in (folder / "quarantine" / "f1.cut.json.reason.txt").read_text()


def test_a_run_in_two_folders_is_stored_once_and_keeps_its_whole_record(tmp_path):
    db = tmp_path / "db.duckdb"
    _write(tmp_path / "f1", record("r.a", folder="f1", samples_per_s=1.0))
    _write(tmp_path / "f2", record("r.a", folder="f2", samples_per_s=2.0))
    assert numa_db.load_runs([tmp_path / "f1", tmp_path / "f2"], db)["inserted"] == 1
    with duckdb.connect(str(db), read_only=True) as con:
        folder_, rec = con.execute("SELECT folder, record FROM runs").fetchone()
    assert folder_ == "f2" and json.loads(rec) == record("r.a", folder="f2", samples_per_s=2.0)


def test_trials_table_of_an_older_database_loses_its_key_but_not_its_rows(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE trials (run_id VARCHAR, trial INTEGER, mode VARCHAR, samples_per_s DOUBLE, "
                    "PRIMARY KEY (run_id, trial, mode))")
        con.execute("INSERT INTO trials VALUES ('old', 0, 'serial', 1.0)")
    _write(folder, record("f1.a", metrics={"samples_per_s": 10.0, "trial_samples_per_s": {"serial": [9.0, 11.0]}}))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT run_id, count(*) FROM trials GROUP BY run_id ORDER BY run_id").fetchall() == [("f1.a", 2), ("old", 1)]
        assert not con.execute("SELECT * FROM duckdb_constraints() WHERE table_name = 'trials'").fetchall()


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
    verdict = {"night": "n1", "baseline": None, "config_key": "k", "config": "c", "tonight_mean": 1.0, "tonight_low": 1.0,
               "tonight_high": 1.0, "baseline_mean": None, "baseline_low": None, "baseline_high": None, "change": None,
               "verdict": "new", "error": None}
    regressions.save_verdicts("nightly_sweep", [verdict], True, db)


@pytest.mark.parametrize("take_lock", [True, False], ids=["load", "writer-without-lock"])
def test_reads_wait_for_a_writer_in_another_process(tmp_path, take_lock):
    db = tmp_path / "db.duckdb"
    _night_stored(db)
    assert waits_for_writer(db, lambda: regressions.last_accepted_night("nightly_sweep", before="n2", database=db),
                            take_lock) == "n1"
    assert waits_for_writer(db, lambda: numa_db.query("SELECT count(*) FROM regressions", database=db), take_lock) == [(1,)]


@pytest.mark.parametrize("take_lock", [True, False], ids=["load", "writer-without-lock"])
def test_a_read_held_up_past_its_wait_fails_clearly(tmp_path, take_lock):
    db = tmp_path / "db.duckdb"
    _night_stored(db)
    with writer_holding(db, take_lock):
        with pytest.raises(numa_db.StoreBusyError) as exc:
            regressions.last_accepted_night("nightly_sweep", before="n2", database=db, lock_timeout_s=0.2)
        assert str(db) in str(exc.value) and f"lock file {db}.lock" in str(exc.value) and "nothing was read" in str(exc.value)
        with pytest.raises(numa_db.StoreBusyError):
            numa_db.query("SELECT 1", database=db, lock_timeout_s=0.2)
    assert regressions.last_accepted_night("nightly_sweep", before="n2", database=db) == "n1"  # free again


def test_a_load_waits_for_a_reader(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    _write(folder, record("f1.a"))
    numa_db.load_runs([folder], db)
    _write(folder, record("f1.b"))
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


def _accepted_night(db, night, phase="nightly_sweep"):
    verdict = {"night": night, "baseline": None, "config_key": "k", "config": "c", "tonight_mean": 1.0, "tonight_low": 1.0,
               "tonight_high": 1.0, "baseline_mean": None, "baseline_low": None, "baseline_high": None, "change": None,
               "verdict": "new", "error": None}
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
        _write(tmp_path / night, record(f"{night}.a", folder=night, success=ok, started_at=f"2026-11-{day}T02:00:00+00:00"))
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
