"""The views over loaded runs: the NUMA penalty, the analysis views, the crossover."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from numa_ops import db as numa_db

from tests.numa_ops import planted
from tests.numa_ops.records import record


def _gpu(run_id, placement, rate, regime="transfer-bound", batch_size=4):
    model = {"name": "m", "patch_size": 8, "depth": 1, "heads": 2, "dim": 32, "mlp_dim": 64}
    rec = record(run_id, device="cuda", placement=placement, gpu_id=0, model=model,
                 metrics={"samples_per_s": rate, "h2d_gbps": rate / 10, "regime": regime, "execution": "eager"})
    rec["test"]["batch_size"] = batch_size
    return rec


def test_numa_penalty_view(folder, db, write_record):
    for i, spread in enumerate((1.0, 1.001)):  # two processes a side, 0.1% apart: an interval, and a tight one
        for rec in (_gpu(f"f1.a{i}", "local", 100.0 * spread), _gpu(f"f1.b{i}", "remote", 80.0 * spread),
                    _gpu(f"f1.c{i}", "local", 50.0 * spread, "launch-bound", 16),
                    _gpu(f"f1.d{i}", "remote", 45.0 * spread, "launch-bound", 16)):
            write_record(folder, rec)
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT regime, throughput_penalty, status, local_processes, remote_processes, penalty_low, "
                           "penalty_high, mde FROM numa_penalty ORDER BY regime").fetchall()
    assert [(r[0], round(r[1], 3), r[2], r[3], r[4]) for r in rows] == [
        ("launch-bound", 0.1, "measured", 2, 2), ("transfer-bound", 0.2, "measured", 2, 2)]
    for _, penalty, _, _, _, low, high, mde in rows:
        assert low < penalty < high and 0 < mde < 0.01


def test_numa_penalty_with_one_process_a_side_gives_no_interval(folder, db, write_record):
    for rec in (_gpu("f1.a", "local", 100.0), _gpu("f1.b", "remote", 80.0)):
        write_record(folder, rec)
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        (row,) = con.execute("SELECT throughput_penalty, penalty_low, penalty_high, mde, status "
                             "FROM numa_penalty").fetchall()
        assert con.execute("SELECT count(*) FROM sensitivity_map").fetchone() == (0,)  # not a finding
    assert row[0] == pytest.approx(0.2) and row[1:4] == (None, None, None)
    assert row[4] == numa_db.ONE_PROCESS == "one process a side: no between-process interval (set test.repeats >= 2)"


def test_numa_penalty_pairs_runs_whose_regimes_differ(folder, db):
    # The regime is a result: the local run came out launch-bound, its remote twin transfer-bound. Same config.
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


def test_numa_penalty_says_when_no_remote_node_exists(folder, db, write_record):
    write_record(folder, _gpu("f1.a", "local", 100.0))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        (row,) = con.execute("SELECT throughput_penalty, status FROM numa_penalty").fetchall()
    assert row[0] is None and row[1].startswith("no remote placement measured")


def test_analysis_views_answer_on_measured_runs(folder, db, write_record):
    model = {"name": "m", "patch_size": 8, "depth": 1, "heads": 2, "dim": 32, "mlp_dim": 64}
    runs = [("local", 100.0, "eager"), ("remote", 90.0, "eager"), ("local", 150.0, "compile")]
    runs += [(place, rate * 1.001, execution) for place, rate, execution in runs]  # a second process of each
    for i, (place, rate, execution) in enumerate(runs):
        metrics = {"samples_per_s": rate, "regime": "transfer-bound", "execution": execution, "flops_per_sample": 10,
                   "h2d_ms": {"median": 1.0}, "forward_ms": {"median": 0.5}, "d2h_ms": {"median": 0.1},
                   "batch_ms": {"median": 1.6}, "fwd_gpu_ms": 0.4,
                   "compile_speedup": 1.5 if execution == "compile" else None}
        write_record(folder, record(f"f1.r{i}", device="cuda", placement=place, gpu_id=0, model=model, metrics=metrics,
                              lane=f"gpu0-cpu{i % 3}-mem{i % 3}"))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT model_name, round(median_penalty, 3) FROM sensitivity_map").fetchall() == [
            ("m", 0.1)]
        h2d_share, launch = con.execute("SELECT h2d_share, launch_share FROM stage_breakdown "
                                        "WHERE execution = 'eager'").fetchone()
        assert round(h2d_share, 3) == 0.625 and round(launch, 3) == 0.2
        assert con.execute("SELECT first_compute_dominated_model FROM crossover "
                           "WHERE execution = 'eager'").fetchone() == (None,)
        assert con.execute("SELECT forward_speedup FROM compile_speedup").fetchall() == [(1.5,)]
        assert con.execute("SELECT best_lane, execution FROM recommendations").fetchall() == [
            ("gpu0-cpu2-mem2", "compile")]
        assert con.execute("SELECT count(*) FROM scaling").fetchone()[0] == 2


def _crossover(db, height=224):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT first_compute_dominated_model, crossover_flops_per_sample, crossover_parameters, "
            "last_transfer_dominated_model, crossover_flops_estimate, models FROM crossover WHERE height = ?", [height]
        ).fetchone()


def test_crossover_view_finds_the_planted_crossover(folder, db):
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


def test_one_noisy_small_model_does_not_move_the_crossover(folder, db):
    planted.write_crossover_runs(folder)
    for i in range(3):  # d1 at 64 px looks compute-dominated (a disturbed measurement); d2..d8 do not
        planted.write(folder, planted.sized_run(f"f1.h64.d1.{i}", 1, gpu_ms=2.0, height=64))
    for depth in planted.DEPTHS[1:]:
        planted.write(folder, planted.sized_run(f"f1.h64.d{depth}", depth, height=64))
    numa_db.load_runs([folder], db)
    assert _crossover(db, 64)[:4] == _crossover(db, 224)[:4] == ("d16", 16 * planted.FLOPS_PER_DEPTH, 16 * 10**6, "d8")


def test_crossover_view_when_no_model_is_compute_dominated(folder, db):
    for depth in planted.DEPTHS[:4]:
        planted.write(folder, planted.sized_run(f"f1.d{depth}", depth))
    numa_db.load_runs([folder], db)
    assert _crossover(db) == (None, None, None, "d8", None, 4)


def _set(rec, setting, value):
    """``rec`` with one test setting changed, where the record keeps it."""
    if setting == "sweep_point":
        rec["sweep_point"] = value
    elif setting == "d2h_mode":
        rec["test"]["d2h_mode"] = rec["metrics"]["d2h_mode"] = value
    else:
        rec["test"][setting] = value
    return rec


@pytest.mark.parametrize(("setting", "values"), [
    ("d2h_mode", ("outputs", "tokens")), ("memory_size_mb", (64, 1024)), ("num_samples", (16, 512)),
    ("sweep_point", (0, 1)), ("warmup_batches", (3, 50)), ("intra_op_threads", (1, 4)),
], ids=["d2h_mode", "memory_size_mb", "num_samples", "sweep_point", "warmup_batches", "intra_op_threads"])
def test_runs_that_differ_in_a_test_setting_are_never_pooled(folder, db, write_record, setting, values):
    # Two configurations alike in all but one setting, each measured local and remote by two processes.
    for v, (value, base) in enumerate(zip(values, (100.0, 50.0), strict=True)):
        for i in range(2):
            for place, rate in (("local", base), ("remote", base * 0.8)):
                write_record(folder, _set(_gpu(f"f1.v{v}.{place}{i}", place, rate * (1 + i / 1000)), setting, value))
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        pen = con.execute(f"SELECT {setting}, local_processes, remote_processes, round(throughput_penalty, 4), status "
                          f"FROM numa_penalty ORDER BY {setting}").fetchall()
        noise = con.execute(f"SELECT {setting}, placement, processes, round(geo_mean_samples_per_s) FROM process_noise "
                            f"ORDER BY {setting}, placement").fetchall()
        stages = con.execute(f"SELECT {setting}, placement, runs FROM stage_breakdown "
                             f"ORDER BY {setting}, placement").fetchall()
    assert pen == [(values[0], 2, 2, 0.2, "measured"), (values[1], 2, 2, 0.2, "measured")]
    assert noise == [(values[0], "local", 2, 100.0), (values[0], "remote", 2, 80.0),
                     (values[1], "local", 2, 50.0), (values[1], "remote", 2, 40.0)]
    assert stages == [(values[0], "local", 2), (values[0], "remote", 2),
                      (values[1], "local", 2), (values[1], "remote", 2)]


def test_penalty_split_is_the_textbook_anova_contrast(folder, db):
    # Four cells (process/pool x local/remote), one-way ANOVA: the CPU-side part is the contrast
    # (process remote - process local) - (pool remote - pool local) of mean ln samples/s, its standard error
    # sqrt(MSE * sum 1/n_i) with the within-cell MSE on N - 4 degrees of freedom.
    from scipy import stats

    rng = np.random.default_rng(11)
    cells = {("process", "local"): 3, ("process", "remote"): 4, ("pool", "local"): 3, ("pool", "remote"): 5}
    logs = {}
    for (mode, place), n in cells.items():
        shift = {"local": 0.0, "remote": -0.10 if mode == "process" else -0.04}[place]
        logs[mode, place] = np.log(1000.0) + shift + rng.normal(0, 0.02, n)
        for i, value in enumerate(logs[mode, place]):
            planted.process_run(folder, f"f1.{mode}.{place}{i}", place, float(np.exp(value)), mode=mode)
    numa_db.load_runs([folder], db)
    n = sum(cells.values())
    sse = sum(float(((v - v.mean()) ** 2).sum()) for v in logs.values())
    mse, df = sse / (n - 4), n - 4
    contrast = (logs["process", "remote"].mean() - logs["process", "local"].mean()
                - logs["pool", "remote"].mean() + logs["pool", "local"].mean())
    se = np.sqrt(mse * sum(1 / len(v) for v in logs.values()))
    half = stats.t.ppf(0.975, df) * se
    with duckdb.connect(str(db), read_only=True) as con:
        got = con.execute("SELECT cpu_side_penalty, cpu_side_low, cpu_side_high, cpu_side_mde "
                          "FROM penalty_split").fetchone()
    want = (-np.expm1(contrast), -np.expm1(contrast + half), -np.expm1(contrast - half),
            -np.expm1(-(stats.t.ppf(0.975, df) + stats.t.ppf(0.80, df)) * se))
    assert got == pytest.approx(want, rel=1e-9)


def test_an_older_database_gains_new_columns_filled_from_its_records(folder, db, write_record):
    rec = record("f1.a")
    rec["test"].update(warmup_batches=7, telemetry="off")
    write_record(folder, rec)
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db)) as con:  # as a numa-lab from before these columns left it
        for view in reversed(numa_db.VIEWS):
            con.execute(f"DROP VIEW {view}")
        con.execute("ALTER TABLE runs DROP COLUMN warmup_batches")
        con.execute("ALTER TABLE runs DROP COLUMN telemetry")
    numa_db.load_runs([folder], db)
    assert numa_db.query("SELECT warmup_batches, telemetry FROM runs", database=db) == [(7, "off")]
def _cpu(run_id, placement, rate, mode="process"):
    """A CPU run on a two-node host: local on the first node, remote on the other (SLIT 21)."""
    node = 0 if placement == "local" else 1
    model = {"name": "m", "patch_size": 8, "depth": 1, "heads": 2, "dim": 32, "mlp_dim": 64}
    return record(run_id, placement=placement, placement_mode=mode, mem_node=node, model=model,
                  cpu_node=node if mode == "process" else 0, numa_distance=10 if node == 0 else 21,
                  metrics={"samples_per_s": rate, "execution": "eager"})


def test_numa_penalty_compares_cpu_runs_placed_on_two_nodes(folder, db, write_record):
    for i, spread in enumerate((1.0, 1.001)):
        for mode in ("process", "pool"):
            write_record(folder, _cpu(f"f1.{mode}-l{i}", "local", 100.0 * spread, mode))
            write_record(folder, _cpu(f"f1.{mode}-r{i}", "remote", 90.0 * spread, mode))
    write_record(folder, record("f1.onenode"))  # a one-node host's CPU run ('cpu'): nothing to compare
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT placement_mode, local_processes, remote_processes, local_numa_distance, "
                           "remote_numa_distance, round(throughput_penalty, 3), status FROM numa_penalty "
                           "ORDER BY placement_mode").fetchall()
    # one row per placement mode; the one-node host's run ('cpu') is in no penalty
    assert [r[:6] for r in rows] == [("pool", 2, 2, 10, 21, 0.1), ("process", 2, 2, 10, 21, 0.1)]
    assert all(r[6] == "measured" for r in rows)
