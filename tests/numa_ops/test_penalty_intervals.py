"""The NUMA penalty between worker processes: coverage by simulation, the SQL view against the Python analysis,
the same interval on every load, never pooling pinned with pageable nor process with pool, the MDE verdict,
the CUPED adjustment, the DMA / CPU-side split and the noise floor of a one-node host."""

from __future__ import annotations

import json
import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from numa_ops import analysis, report
from numa_ops import db as numa_db
from numa_ops.report.read import read_report_data

from tests.numa_ops import planted
from tests.numa_ops.records import record

PLANTED = 0.04
STUDIES = 1000


@pytest.mark.parametrize("cv", [pytest.param(0.01, id="cv1pct"), pytest.param(0.05, id="cv5pct")])
@pytest.mark.parametrize("n", [pytest.param(n, id=f"{n}-a-side") for n in range(2, 11)])
def test_penalty_interval_covers_the_planted_penalty(n, cv):
    """1000 simulated studies, lognormal noise between processes: the 95% interval holds the truth >= 93%."""
    rng = np.random.default_rng(1000 * n + int(cv * 100))
    covered = 0
    for _ in range(STUDIES):
        out = analysis.process_penalty(*planted.lognormal_study(rng, n, cv, PLANTED))
        covered += out.low <= PLANTED <= out.high
    assert covered / STUDIES >= 0.93


@pytest.mark.parametrize("n", [pytest.param(3, id="3-a-side"), pytest.param(6, id="6-a-side")])
def test_a_penalty_of_the_mde_is_measured_at_least_75pct_of_the_time(n):
    """A true penalty equal to the MDE (from the true spread) is measured (its interval excludes 0) in about 4
    studies of 5, the power the MDE is stated at; no penalty is measured in about 1 of 20; a measured penalty's
    interval always excludes 0 and an unmeasured one's holds it."""
    cv, rng = 0.03, np.random.default_rng(n)
    mde_log = analysis.mde_factor(2 * n - 2) * cv * math.sqrt(2 / n)
    at_mde = [analysis.process_penalty(*planted.lognormal_study(rng, n, cv, -math.expm1(-mde_log)))
              for _ in range(STUDIES)]
    assert 0.75 <= sum(out.verdict == "measured" for out in at_mde) / STUDIES <= 0.86
    none = [analysis.process_penalty(*planted.lognormal_study(rng, n, cv, 0.0)) for _ in range(STUDIES)]
    assert sum(out.verdict == "measured" for out in none) / STUDIES <= 0.071  # 5% + 3 binomial sd of 1000 studies
    for out in at_mde + none:
        assert out.detectable == (out.low > 0 or out.high < 0)
        assert out.verdict == ("measured" if out.detectable else f"not detectable at this noise (MDE {out.mde:.1%})")


def _view(db, where="true"):
    with duckdb.connect(str(db), read_only=True) as con:  # a plain connection: the view needs no UDF
        cols = [d[0] for d in con.execute(f"SELECT * FROM numa_penalty WHERE {where}").description]
        return [dict(zip(cols, row, strict=True))
                for row in con.execute(f"SELECT * FROM numa_penalty WHERE {where}").fetchall()]


def test_the_view_gives_the_python_interval_through_the_real_load(tmp_path):
    """Simulated studies written as run files, loaded, queried: the SQL interval and MDE are analysis's."""
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    rng = np.random.default_rng(7)
    studies = {}
    for i, (n, cv) in enumerate([(2, 0.01), (3, 0.05), (4, 0.01), (5, 0.05), (7, 0.02), (10, 0.05), (2, 0.3),
                                 (203, 0.02)]):
        studies[f"s{i}"] = planted.lognormal_study(rng, n, cv, PLANTED)  # 203 a side: df 404, past the t table
        planted.write_process_study(folder, f"s{i}", *studies[f"s{i}"])
    numa_db.load_runs([folder], db)
    rows = {r["model_name"]: r for r in _view(db)}
    assert set(rows) == set(studies)
    for name, (local, remote) in studies.items():
        want, got = analysis.process_penalty(local, remote), rows[name]
        assert (got["local_processes"], got["remote_processes"], got["df"]) == (want.n_local, want.n_remote, want.df)
        for column, value in (("throughput_penalty", want.penalty), ("penalty_low", want.low),
                              ("penalty_high", want.high), ("mde", want.mde), ("sd_ln", want.sd_log)):
            assert got[column] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, column)
        assert got["status"] == want.verdict, name


def test_the_t_table_is_scipys():
    assert numa_db.T_TABLE_MAX_DF == analysis.T_TABLE_MAX_DF
    with duckdb.connect() as con:
        rows = con.execute(f"WITH {numa_db.T_TABLE} SELECT df, t975, t80 FROM tq ORDER BY df").fetchall()
    assert len(rows) == analysis.T_TABLE_MAX_DF
    for df, t975, t80 in rows:
        assert (t975, t80) == (analysis.t_quantile(0.975, df), analysis.t_quantile(0.80, df))


def test_the_same_records_give_the_same_interval_on_every_load(tmp_path):
    rng = np.random.default_rng(11)
    for i in range(6):  # 40 processes a side, split over two folders: sums whose order would show in the last bit
        local, remote = planted.lognormal_study(rng, 40, 0.05, PLANTED)
        planted.write_process_study(tmp_path / f"f{i % 2 + 1}", f"s{i}", local, remote, model="m", batch=2 ** i)
    first, second = tmp_path / "one.duckdb", tmp_path / "two.duckdb"
    numa_db.load_runs([tmp_path / "f1", tmp_path / "f2"], first)
    numa_db.load_runs([tmp_path / "f2", tmp_path / "f1"], second)  # the other file order
    numa_db.load_runs([tmp_path / "f1", tmp_path / "f2"], second)  # and loaded again: nothing changes
    a, b = _view(first), _view(second)
    assert len(a) == 6 and a == b  # exactly: every column, every bit


@pytest.mark.parametrize(
    ("variants", "column"),
    [pytest.param({"pinned": {"pinned": True}, "pageable": {"pinned": False}}, "pinned_memory",
                  id="pinned-vs-pageable"),
     pytest.param({"process": {"mode": "process"}, "pool": {"mode": "pool"}}, "placement_mode", id="process-vs-pool")],
)
def test_one_configurations_variants_are_never_pooled(tmp_path, variants, column):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    rng = np.random.default_rng(5)
    planted_penalty = dict(zip(variants, (0.10, 0.30), strict=True))
    for name, kwargs in variants.items():
        planted.write_process_study(folder, name, *planted.lognormal_study(rng, 3, 0.005, planted_penalty[name]),
                                    model="m", **kwargs)
    numa_db.load_runs([folder], db)
    rows = _view(db)
    assert len(rows) == 2 and all(r["status"] == "measured" for r in rows)
    by_variant = {r[column]: r["throughput_penalty"] for r in rows}
    expected = {(True if name == "pinned" else False) if column == "pinned_memory" else name: p
                for name, p in planted_penalty.items()}
    assert by_variant == pytest.approx(expected, abs=0.02)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM sensitivity_map").fetchone() == (2,)
    table = report.numa_penalties(read_report_data(db, "f1"))
    assert len(table) == 2 and set(table["host memory" if column == "pinned_memory" else "placement mode"]) == (
        {"pinned", "pageable"} if column == "pinned_memory" else {"process", "pool"})
    report.write_report(tmp_path / "rep", "t", database=db, folder="f1")
    guide = (tmp_path / "rep" / "best_practices.md").read_text()
    named = (("pinned host memory", "pageable host memory") if column == "pinned_memory"
             else ("process placement", "pool placement"))
    penalty_lines = [line for line in guide.splitlines() if "remote placement costs" in line]
    assert len(penalty_lines) == 2 and all(any(n in line for n in named) for line in penalty_lines)
    assert all(n in guide for n in named)


def test_older_records_without_the_settings_count_as_pinned_process_placement(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    planted.write_process_study(folder, "old", [100.0, 101.0], [80.0, 80.8], model="m", pinned=None)
    numa_db.load_runs([folder], db)
    ((row),) = _view(db)
    assert (row["pinned_memory"], row["placement_mode"], row["status"]) == (True, "process", "measured")


@pytest.mark.parametrize(
    ("penalty", "cv", "runs", "measured"),
    [pytest.param(0.01, 0.05, 3, False, id="1pct-in-5pct-noise"),
     pytest.param(0.20, 0.01, 3, True, id="20pct-in-1pct-noise")],
)
def test_a_penalty_is_quoted_only_when_its_interval_excludes_0(tmp_path, penalty, cv, runs, measured):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    local, remote = planted.lognormal_study(np.random.default_rng(3), runs, cv, penalty)
    planted.write_process_study(folder, "m", local, remote)
    numa_db.load_runs([folder], db)
    (row,) = _view(db)
    (table,) = report.numa_penalties(read_report_data(db, "f1")).to_dict("records")
    if measured:
        assert row["status"] == table["verdict"] == "measured" and row["penalty_low"] > 0
        assert table["penalty"] == pytest.approx(penalty, abs=0.02)
    else:
        assert row["status"] == table["verdict"] == f"not detectable at this noise (MDE {row['mde']:.1%})"
        assert row["penalty_low"] < 0 < row["penalty_high"]
        assert row["mde"] > 0.05 and table["penalty"] is None  # ~14%: 3 processes a side at 5% noise
        report.write_report(tmp_path / "rep", "t", database=db, folder="f1")
        guide = (tmp_path / "rep" / "best_practices.md").read_text()
        assert row["status"] in guide and "remote placement costs" not in guide


def _control_study(rng, n, explained):
    """Processes whose CPU speed (the control) moves their samples/s, or a control that is unrelated."""
    speed = [np.exp(rng.normal(0, 0.05, n)) for _ in range(2)]
    rates = [1000 * (1 - p) * s * np.exp(rng.normal(0, 0.005, n)) for p, s in zip((0.0, PLANTED), speed, strict=True)]
    controls = speed if explained else [np.exp(rng.normal(0, 0.05, n)) for _ in range(2)]
    return [list(r) for r in rates], [list(c) for c in controls]


@pytest.mark.parametrize(("explained", "n"), [pytest.param(True, 6, id="control-explains-noise"),
                                              pytest.param(False, 20, id="unrelated-control")])
def test_cuped_adjustment_on_the_cpu_control(tmp_path, explained, n):
    (local, remote), (cl, cr) = _control_study(np.random.default_rng(21), n, explained)
    adj = analysis.cuped_penalty(local, remote, cl, cr)
    plain = analysis.process_penalty(local, remote)
    assert adj.unadjusted == plain and adj.adjusted.df == plain.df - 1 and adj.df_lost == 1
    if explained:
        assert adj.r_squared > 0.9 and adj.theta == pytest.approx(1.0, abs=0.1)
        assert adj.adjusted.high - adj.adjusted.low < (plain.high - plain.low) / 3
        assert adj.adjusted.mde < plain.mde and adj.adjusted.low <= PLANTED <= adj.adjusted.high
    else:
        assert adj.r_squared < 0.15
        assert adj.adjusted.high - adj.adjusted.low == pytest.approx(plain.high - plain.low, rel=0.25)
    # through the database and the report (pool placement: the arms share the launching CPU): the control is a
    # column, the adjusted interval and R^2 are shown
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    planted.write_process_study(folder, "m", local, remote, controls=(cl, cr), mode="pool")
    numa_db.load_runs([folder], db)
    (row,) = report.numa_penalties(read_report_data(db, "f1")).to_dict("records")
    assert row["control R^2"] == pytest.approx(adj.r_squared)
    assert (row["adjusted CI low"], row["adjusted CI high"]) == (pytest.approx(adj.adjusted.low),
                                                                  pytest.approx(adj.adjusted.high))
    assert "<th>control R^2</th>" in report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text()


def test_process_placement_is_not_adjusted_on_a_control_it_moves(tmp_path):
    """numactl moves the launching CPU with the memory in process placement: no CPU-adjusted penalty there, the
    same processes in pool placement get one."""
    (local, remote), (cl, cr) = _control_study(np.random.default_rng(21), 6, True)
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    planted.write_process_study(folder, "m", local, remote, controls=(cl, cr), mode="process")
    planted.write_process_study(folder, "p", local, remote, controls=(cl, cr), mode="pool")
    numa_db.load_runs([folder], db)
    rows = {r["model"]: r for r in report.numa_penalties(read_report_data(db, "f1")).to_dict("records")}
    assert rows["m"]["placement mode"] == "process" and rows["p"]["placement mode"] == "pool"
    assert pd.isna(rows["m"]["adjusted CI low"]) and pd.isna(rows["m"]["control R^2"])
    assert rows["p"]["control R^2"] == pytest.approx(analysis.cuped_penalty(local, remote, cl, cr).r_squared)


def test_cuped_needs_a_control_per_process_that_varies():
    with pytest.raises(ValueError, match="one control value per process"):
        analysis.cuped_penalty([1.0, 2.0], [1.0, 2.0], [1.0], [1.0, 2.0])
    # no spread to regress on
    assert analysis.cuped_penalty([100.0, 101.0], [90.0, 91.0], [5.0, 5.0], [5.0, 5.0]) is None
    assert analysis.cuped_penalty([100.0], [90.0, 91.0], [5.0], [5.0, 6.0]) is None


def test_cuped_is_deterministic_and_pairs_each_process_with_its_control():
    (local, remote), (cl, cr) = _control_study(np.random.default_rng(2), 5, True)
    a = analysis.cuped_penalty(local, remote, cl, cr)
    b = analysis.cuped_penalty(local[::-1], remote[::-1], cl[::-1], cr[::-1])
    assert a == b


def test_penalty_split_into_dma_and_cpu_side(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    rng = np.random.default_rng(9)
    for mode, penalty in (("process", 0.20), ("pool", 0.10)):  # the CPU side: 1 - 0.8 / 0.9 = 11.1%
        planted.write_process_study(folder, mode, *planted.lognormal_study(rng, 4, 0.005, penalty), model="m",
                                    mode=mode)
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        cols = [d[0] for d in con.execute("SELECT * FROM penalty_split").description]
        (row,) = [dict(zip(cols, r, strict=True)) for r in con.execute("SELECT * FROM penalty_split").fetchall()]
    pen = {r["placement_mode"]: r for r in _view(db)}
    assert (row["process_penalty"] == pen["process"]["throughput_penalty"]
            and row["dma_penalty"] == pen["pool"]["throughput_penalty"])
    assert (1 - row["process_penalty"]) == pytest.approx((1 - row["dma_penalty"]) * (1 - row["cpu_side_penalty"]))
    assert row["cpu_side_penalty"] == pytest.approx(1 - 0.8 / 0.9, abs=0.01)
    assert row["cpu_side_low"] < row["cpu_side_penalty"] < row["cpu_side_high"] and 0 < row["cpu_side_mde"] < 0.02
    assert (row["process_status"], row["dma_status"], row["cpu_side_status"]) == ("measured",) * 3
    assert row["pool_local_processes"] == row["process_remote_processes"] == 4
    report.write_report(tmp_path / "rep", "t", database=db, folder="f1")
    guide = (tmp_path / "rep" / "best_practices.md").read_text()
    assert f"CPU-side part {row['cpu_side_penalty']:.1%} (MDE {row['cpu_side_mde']:.1%})" in guide
    assert "Penalty split: DMA part and CPU-side part" in (tmp_path / "rep" / "index.html").read_text()


def test_penalty_split_is_the_interaction_of_a_textbook_two_way_anova(tmp_path):
    """The CPU-side part against a two-way ANOVA written out (ln samples/s on mode, placement and their
    interaction by least squares, unequal cells): the same estimate, standard error and df = N - 4."""
    from scipy import stats

    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    rng = np.random.default_rng(31)
    cells = {("process", "local"): 3, ("process", "remote"): 5, ("pool", "local"): 4, ("pool", "remote"): 3}
    truth = {("process", "remote"): 0.10, ("pool", "remote"): 0.04}
    rates = {cell: list(1000 * (1 - truth.get(cell, 0.0)) * np.exp(rng.normal(0, 0.03, n)))
             for cell, n in cells.items()}
    for mode in ("process", "pool"):
        planted.write_process_study(folder, mode, rates[(mode, "local")], rates[(mode, "remote")], model="m", mode=mode)
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        cols = [d[0] for d in con.execute("SELECT * FROM penalty_split").description]
        (row,) = [dict(zip(cols, r, strict=True)) for r in con.execute("SELECT * FROM penalty_split").fetchall()]
    y, x = [], []
    for (mode, place), values in rates.items():
        for v in values:
            pool, remote = float(mode == "pool"), float(place == "remote")
            y.append(math.log(v))
            x.append([1.0, pool, remote, pool * remote])
    x, y = np.array(x), np.array(y)
    beta, rss, *_ = np.linalg.lstsq(x, y, rcond=None)
    df = len(y) - 4
    se = math.sqrt(rss[0] / df * np.linalg.inv(x.T @ x)[3, 3])
    cpu_log = -beta[3]  # process's log ratio beyond pool's
    t975, t80 = stats.t.ppf(0.975, df), stats.t.ppf(0.80, df)
    assert df == 11
    assert row["cpu_side_penalty"] == pytest.approx(-math.expm1(cpu_log), rel=1e-9)
    assert row["cpu_side_low"] == pytest.approx(-math.expm1(cpu_log + t975 * se), rel=1e-9)
    assert row["cpu_side_high"] == pytest.approx(-math.expm1(cpu_log - t975 * se), rel=1e-9)
    assert row["cpu_side_mde"] == pytest.approx(-math.expm1(-(t975 + t80) * se), rel=1e-9)
    measured = abs(cpu_log) >= t975 * se
    assert row["cpu_side_status"] == ("measured" if measured else analysis.not_detectable(row["cpu_side_mde"]))


def test_a_one_node_host_still_reports_its_noise_floor(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    rates = [1000.0, 1020.0, 985.0, 1007.0]
    for i, rate in enumerate(rates):
        planted.process_run(folder, f"f1.local{i}", "local", rate, repeat=i)
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        (status,) = con.execute("SELECT status FROM numa_penalty").fetchone()
        processes, sd_ln, cv, aa_mde, noise_status = con.execute(
            "SELECT processes, sd_ln, between_process_cv, aa_mde, status FROM process_noise").fetchone()
    assert status.startswith("no remote placement measured")
    sd, mde = analysis.noise_floor(rates)
    assert (processes, noise_status) == (4, "measured")
    assert sd_ln == pytest.approx(sd, rel=1e-9) and aa_mde == pytest.approx(mde, rel=1e-9)
    assert cv == pytest.approx(np.std(rates, ddof=1) / np.mean(rates), rel=0.02)
    report.write_report(tmp_path / "rep", "t", database=db, folder="f1")
    guide = (tmp_path / "rep" / "best_practices.md").read_text()
    assert "Not measurable here" in guide and f"detects {mde:.1%} (A/A MDE)" in guide


def test_new_record_fields_are_columns(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    planted.process_run(folder, "f1.new", "remote", 100.0, mode="pool", control=5.0e4, repeat=2)
    rec = record("f1.old", device="cuda")
    planted.write(folder, rec)
    new = json.loads((folder / "runs" / "f1.new.json").read_text())
    new["pool_node"] = 1
    new["metrics"].update(binding_stage="h2d", launch_cpu=7, trials=9,
                          samples_per_s_ci={"low": 98.0, "high": 102.0, "level": 0.961})
    planted.write(folder, new)
    numa_db.load_runs([folder], db)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT run_id, repeat, placement_mode, pool_node, cpu_control_rate, binding_stage, "
                           "launch_cpu, trials, samples_per_s_ci_low, samples_per_s_ci_high, samples_per_s_ci_level "
                           "FROM runs ORDER BY run_id").fetchall()
    assert rows == [("f1.new", 2, "pool", 1, 5.0e4, "h2d", 7, 9, 98.0, 102.0, 0.961),
                    ("f1.old", None, None, None, None, None, None, None, None, None, None)]


@pytest.mark.parametrize(
    ("view", "columns"),
    [pytest.param("numa_penalty", {
        "host", "gpu_name", "gpu_id", "model_name", "depth", "dim", "height", "width", "batch_size", "execution",
        "pinned_memory", "placement_mode", "regime", "local_runs", "remote_runs", "local_processes", "remote_processes",
        "local_mean_ln", "local_sd_ln", "remote_mean_ln", "remote_sd_ln", "log_ratio", "df", "sd_ln",
        "local_samples_per_s", "remote_samples_per_s", "local_h2d_gbps", "remote_h2d_gbps", "local_numa_distance",
        "remote_numa_distance", "throughput_penalty", "h2d_penalty", "penalty_low", "penalty_high", "mde", "status"},
        id="numa_penalty"),
     pytest.param("penalty_split", {
         "process_penalty", "process_low", "process_high", "process_mde", "process_status", "dma_penalty", "dma_low",
         "dma_high", "dma_mde", "dma_status", "cpu_side_penalty", "cpu_side_low", "cpu_side_high", "cpu_side_mde",
         "cpu_side_status", "process_local_processes", "process_remote_processes", "pool_local_processes",
         "pool_remote_processes", "pinned_memory"}, id="penalty_split"),
     pytest.param("process_noise", {
         "device", "placement_mode", "placement", "pinned_memory", "runs", "processes", "geo_mean_samples_per_s",
         "sd_ln", "between_process_cv", "aa_mde", "status"}, id="process_noise")],
)
def test_views_have_the_documented_columns(tmp_path, view, columns):
    db = tmp_path / "db.duckdb"
    numa_db.load_runs([], db)
    with duckdb.connect(str(db), read_only=True) as con:
        have = {d[0] for d in con.execute(f"SELECT * FROM {view} LIMIT 0").description}
    assert columns <= have
