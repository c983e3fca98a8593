"""Paired runs in the store: one row per comparison in ``paired_comparisons``, the ``paired_penalty`` view."""

from __future__ import annotations

import duckdb
import pytest
from numa_ops import db as numa_db

from tests.numa_ops import planted
from tests.numa_ops.records import record

PLANTED = 0.05  # the compared memory arm runs 5% fewer samples/s than the reference


def _memory_run(folder, run_id="f1.paired", seed=1, **kwargs):
    paired = planted.paired_block("memory", [1000.0, 1000.0 * (1 - PLANTED)], seed=seed, control_effect=0.1, **kwargs)
    return planted.paired_run(folder, run_id, paired)


def test_a_planted_memory_penalty_is_stored_and_found(folder, db, query_rows):
    rec = _memory_run(folder)
    numa_db.load_runs([folder], db)
    (row,) = query_rows(db, "SELECT * FROM paired_comparisons")
    cmp, arms = rec["metrics"]["paired"]["comparisons"][0], rec["metrics"]["paired"]["arms"]
    assert (row["run_id"], row["comparison"], row["kind"], row["arm"], row["reference"]) == (
        "f1.paired", 0, "memory", 1, 0)
    assert (row["arm_name"], row["arm_node"], row["arm_pinned"], row["reference_name"], row["reference_node"]) == (
        "node1", 1, True, "node0", 0)
    assert (row["blocks"], row["df"], row["stop_reason"], row["target"], row["trials_s"]) == (
        12, 11, "target", 0.02, 42.0)
    for col in ("ratio", "low", "high", "half_width", "mde"):
        assert row[col] == cmp[col], col
    for col in ("ratio", "low", "high", "mde", "slope"):
        assert row[f"adjusted_{col}"] == cmp["adjusted"][col], col
    assert row["arm_samples_per_s"] == arms[1]["samples_per_s"] and row["arm_trials"] == 24
    (pen,) = query_rows(db, "SELECT * FROM paired_penalty")
    assert pen["part"] == "DMA (host memory remote, thread local)" and pen["verdict"] == "measured"
    assert pen["penalty_low"] < PLANTED < pen["penalty_high"] and pen["penalty"] == pytest.approx(1 - cmp["ratio"])
    assert (pen["adjusted_penalty_low"] < PLANTED < pen["adjusted_penalty_high"]
            and pen["adjusted_verdict"] == "measured")
    # the control explains most of the trial noise here: the adjusted interval is the narrower one
    assert pen["adjusted_half_width"] < pen["half_width"]
    assert (pen["model_name"], pen["batch_size"], pen["host_memory"], pen["gpu_seconds"], pen["blocks"]) == (
        "m", 8, "pinned", 42.0, 12)


def test_a_reload_never_duplicates_and_a_failed_run_measured_again_gets_its_rows(folder, db, query_rows):
    planted.write(folder, record("f1.paired", success=False, placement_mode="paired"))
    numa_db.load_runs([folder], db)
    assert query_rows(db, "SELECT count(*) AS n FROM paired_comparisons") == [{"n": 0}]
    planted.paired_run(folder, "f1.paired",
                       planted.paired_block("memory", [1000.0, 950.0, 900.0], seed=2, nodes=(0, 1, 2)))
    for _ in range(3):
        numa_db.load_runs([folder], db)
        assert query_rows(db, "SELECT comparison, arm_name FROM paired_comparisons ORDER BY comparison") == [
            {"comparison": 0, "arm_name": "node1"}, {"comparison": 1, "arm_name": "node2"}]


def test_a_database_without_the_table_gets_the_stored_paired_runs_comparisons(folder, db, query_rows):
    _memory_run(folder)
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db)) as con:  # as an older numa-lab left it: the run stored, no comparisons table
        con.execute("DROP VIEW paired_penalty")
        con.execute("DROP TABLE paired_comparisons")
    assert numa_db.load_runs([folder], db)["unchanged"] == 1
    assert query_rows(db, "SELECT run_id, kind FROM paired_comparisons") == [{"run_id": "f1.paired", "kind": "memory"}]


@pytest.mark.parametrize(("kind", "rates", "part", "measured"), [
    ("thread", [1000.0, 1000.0], "CPU side (thread remote, memory local)", False),
    ("process", [1000.0, 950.0], "whole process (CPU and all memory remote)", True),
], ids=["thread", "process"])
def test_arms_that_move_the_control_are_never_adjusted(folder, db, query_rows, kind, rates, part, measured):
    paired = planted.paired_block(kind, rates, seed=3)
    # wrongly given
    paired["comparisons"][0]["adjusted"] = {"ratio": 1.0, "low": 0.99, "high": 1.01, "mde": 0.01, "slope": 0.5}
    planted.paired_run(folder, f"f1.{kind}", paired)
    numa_db.load_runs([folder], db)
    (pen,) = query_rows(db, "SELECT * FROM paired_penalty")
    assert pen["part"] == part
    assert all(pen[c] is None for c in ("adjusted_penalty", "adjusted_penalty_low", "adjusted_mde", "adjusted_slope",
                                        "adjusted_verdict"))
    true_penalty = 1 - rates[1] / rates[0]
    assert pen["penalty_low"] < true_penalty < pen["penalty_high"]
    assert pen["verdict"] == ("measured" if measured else f"not detectable at this noise (MDE {100 * pen['mde']:.1f}%)")


@pytest.mark.parametrize(("nodes", "pinned", "part"), [
    ((0, 0), (True, True), "A/A check (both arms alike)"),
    ((0, 0), (True, False), "host memory kind (pinned vs pageable, same node)"),
], ids=["aa", "pinned-vs-pageable"])
def test_what_a_comparison_measures(folder, db, query_rows, nodes, pinned, part):
    planted.paired_run(folder, "f1.p",
                       planted.paired_block("memory", [1000.0, 1000.0], seed=4, nodes=nodes, pinned=pinned))
    numa_db.load_runs([folder], db)
    assert query_rows(db, "SELECT part FROM paired_penalty") == [{"part": part}]


def test_a_paired_runs_row_stands_for_its_reference_arm_and_stays_out_of_the_process_views(folder, db, query_rows):
    _memory_run(folder)
    numa_db.load_runs([folder], db)
    assert query_rows(db, "SELECT placement, placement_mode, numa_distance FROM runs") == [
        {"placement": "remote", "placement_mode": "paired", "numa_distance": 21}]  # as the record says: arm 1
    assert query_rows(db, "SELECT placement, numa_distance FROM measured_runs") == [
        {"placement": "local", "numa_distance": 10}]
    for view in ("numa_penalty", "process_noise"):
        assert query_rows(db, f"SELECT count(*) AS n FROM {view}") == [{"n": 0}], view


def test_records_without_paired_load_as_before(folder, db, query_rows):
    planted.write_penalty_runs(folder, 0.2, seed=0)
    planted.write(folder, record("f1.old", metrics={"samples_per_s": 5.0}))  # an older record: no placement mode at all
    numa_db.load_runs([folder], db)
    assert query_rows(db, "SELECT count(*) AS n FROM paired_comparisons") == [{"n": 0}]
    assert query_rows(db, "SELECT count(*) AS n FROM paired_penalty") == [{"n": 0}]
    assert query_rows(db, "SELECT placement_mode, count(*) AS n FROM filled_runs GROUP BY ALL") == [
        {"placement_mode": "process", "n": 7}]
    (pen,) = query_rows(db, "SELECT throughput_penalty, status FROM numa_penalty")
    assert pen["status"] == "measured" and pen["throughput_penalty"] == pytest.approx(0.2, abs=0.02)

