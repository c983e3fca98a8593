from __future__ import annotations

import json
import re

import duckdb
import numpy as np
import pandas as pd
import pytest
from filelock import FileLock
from numa_ops import analysis, regressions, report, results
from numa_ops import db as numa_db
from numa_ops.report import charts, guide, page
from numa_ops.report.read import read_report_data

from tests.numa_ops import planted
from tests.numa_ops.db.test_connection import waits_for_writer, writer_holding
from tests.numa_ops.records import record


def _guide(out_dir, db, folder=None):
    """best_practices.md over ``folder``'s runs (or all), as write_report writes it."""
    data = read_report_data(db, folder)
    return guide.write_guide(out_dir, data, analysis.scaling_laws(data.law_points), None)


def test_report_is_offline_and_has_charts(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for name, rate in (("tiny", 100.0), ("tiny2", 60.0)):
        results.write_json_atomic(folder / "runs" / f"f1.{name}.json", record(f"f1.{name}", samples_per_s=rate))
    results.write_json_atomic(folder / "runs" / "f1.bad.json", record("f1.bad", success=False))
    numa_db.load_runs([folder], db)
    topo = {"host": "h", "nodes": [{}], "gpus": [], "notes": ["one NUMA node: no remote placement exists on this host"]}
    index = report.write_report(tmp_path / "rep", "title <x>", database=db, folder="f1", topology=topo)
    page = index.read_text()
    assert not re.search(r"<script[^>]+src=", page), "the page must not load scripts from the network"
    assert "vegaEmbed" in page and "Throughput per model" in page and "Stage breakdown" in page
    assert "title &lt;x&gt;" in page  # escaped
    assert "no remote placement exists" in page
    assert "H2D and D2H are not measured" in page
    assert "Failed runs" in page and "boom" in page
    for png in ("throughput.png", "stages.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_successful_runs(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    results.write_json_atomic(folder / "runs" / "f1.bad.json", record("f1.bad", success=False))
    numa_db.load_runs([folder], db)
    page = report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text()
    assert "No successful runs to chart" in page
    assert "Not measurable here" in (tmp_path / "rep" / "best_practices.md").read_text()


def test_scaling_law_table_from_three_models(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for i, params in enumerate((1e6, 2e6, 4e6)):
        rec = record(f"f1.m{i}", samples_per_s=1e9 / params)  # time per sample exactly linear in parameters
        rec["metrics"]["parameters"] = params
        rec["model"]["name"] = f"m{i}"
        results.write_json_atomic(folder / "runs" / f"{rec['run_id']}.json", rec)
    numa_db.load_runs([folder], db)
    laws = analysis.scaling_laws(read_report_data(db, "f1").law_points)
    assert list(laws["regime"]) == ["linear"] and laws["models"].iloc[0] == 3
    assert "params^1.000" in laws["law"].iloc[0]
    assert "Scaling laws" in report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text()


def _processes(folder, rates, batch=None, **extra):
    """One run record (one worker process) per rate and placement of model m, eager, transfer-bound."""
    for place, values in rates.items():
        for i, rate in enumerate(values):
            rec = record(f"{folder.name}.{'' if batch is None else f'b{batch}.'}{place}{i}", folder=folder.name,
                         device="cuda", placement=place, gpu_id=0,
                         lane=f"gpu0-cpu{int(place == 'remote')}-mem{int(place == 'remote')}",
                         metrics={"samples_per_s": rate, "execution": "eager", "regime": "transfer-bound",
                                  "trial_samples_per_s": {"serial": [rate - 1, rate, rate + 1]}}, **extra)
            rec["model"]["name"] = "m"
            if batch is not None:
                rec["test"]["batch_size"] = batch
            planted.write(folder, rec)


def test_numa_penalty_table_with_between_process_ci(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    _processes(folder, {"local": (100.0, 100.5), "remote": (80.0, 80.4)})  # two processes a side, 0.5% apart
    numa_db.load_runs([folder], db)
    table = report.numa_penalties(read_report_data(db, "f1"))
    assert len(table) == 1
    row = table.iloc[0]
    assert abs(row["penalty"] - 0.2) < 1e-9 and row["95% CI low"] < 0.2 < row["95% CI high"]
    assert row["verdict"] == "measured" and 0 < row["MDE"] < 0.1 and row["ci_basis"] == analysis.BETWEEN_RUNS
    html = report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text()
    assert "between worker processes, 95% t interval" in html and "<th>MDE</th>" in html
    assert "bootstrap" not in html.split("<h2>NUMA penalty", 1)[1]
    assert (tmp_path / "rep" / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    guide = (tmp_path / "rep" / "best_practices.md").read_text()
    assert "remote placement costs 20.0% of samples/s" in guide and "2 local and 2 remote processes" in guide


def test_a_penalty_from_one_process_a_side_has_no_interval(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    _processes(folder, {"local": (100.0,), "remote": (80.0,)})
    numa_db.load_runs([folder], db)
    (row,) = report.numa_penalties(read_report_data(db, "f1")).to_dict("records")
    assert row["ci_basis"] == numa_db.ONE_PROCESS == row["verdict"] and "test.repeats >= 2" in row["verdict"]
    assert row["penalty"] is None and row["95% CI low"] is None and row["MDE"] is None  # no figure without an interval
    html = report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text()
    assert "<th>ci_basis</th>" in html and numa_db.ONE_PROCESS in html and "Each run is one worker process" in html
    guide = (tmp_path / "rep" / "best_practices.md").read_text()
    assert numa_db.ONE_PROCESS in guide and "20.0%" not in guide


def test_penalty_table_gives_the_same_penalty_as_the_view_and_the_guide(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    local, remote = (100.0, 100.0, 104.0), (80.0, 79.0, 81.0)  # one fast local process
    _processes(folder, {"local": local, "remote": remote})
    numa_db.load_runs([folder], db)
    (row,) = report.numa_penalties(read_report_data(db, "f1")).to_dict("records")
    (view,) = numa_db.query("SELECT throughput_penalty FROM numa_penalty", database=db)
    expected = 1 - np.exp(np.log(remote).mean() - np.log(local).mean())  # geometric means: 1 - 80.0 / 101.3
    assert row["penalty"] == pytest.approx(view[0]) == pytest.approx(expected)
    assert expected == pytest.approx(0.2104, abs=1e-4)  # not the median's 0.2
    index = report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text()
    assert f"<td>{expected:.3f}</td>" in index.split("<h2>NUMA penalty", 1)[1]
    assert f"remote placement costs {expected:.1%} of samples/s" in (tmp_path / "rep" / "best_practices.md").read_text()


def test_a_penalty_below_its_mde_is_not_quoted(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    _processes(folder, {"local": (100.0, 108.0, 93.0), "remote": (97.0, 104.0, 92.0)})  # 2% apart, 7% noise
    numa_db.load_runs([folder], db)
    (row,) = report.numa_penalties(read_report_data(db, "f1")).to_dict("records")
    (view,) = numa_db.query("SELECT throughput_penalty, mde, status FROM numa_penalty", database=db)
    assert 0 < view[0] < view[1] and view[2] == f"not detectable at this noise (MDE {view[1]:.1%})" == row["verdict"]
    assert row["penalty"] is None and row["MDE"] == pytest.approx(view[1])
    index = report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text()
    section = index.split("<h2>NUMA penalty", 1)[1].split("<h2>", 1)[0]
    assert f"<td>{view[2]}</td>" in section and f"{view[0]:.3f}" not in section
    guide = (tmp_path / "rep" / "best_practices.md").read_text()
    assert view[2] in guide and f"{view[0]:.1%}" not in guide
    heat = charts.sensitivity_heatmap(read_report_data(db, "f1").penalty).data
    (cell,) = heat[heat["placement"].str.startswith("remote")].to_dict("records")
    assert cell["label"] == f"not detectable (MDE {view[1]:.1%})" and pd.isna(cell["relative"])


def test_transfer_charts_need_two_image_sizes_and_show_flat_d2h(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for size in (224, 384):
        rec = record(f"f1.s{size}", device="cuda", metrics={
            "samples_per_s": 10.0, "h2d_gbps": 40.0, "h2d_bytes_per_batch": 4 * 3 * size * size * 4,
            "d2h_bytes_per_batch": 4 * 1256 * 4})
        rec["test"]["tensor_shape"] = [3, size, size]
        rec["test"]["batch_size"] = 4
        results.write_json_atomic(folder / "runs" / f"{rec['run_id']}.json", rec)
    numa_db.load_runs([folder], db)
    drawn = charts.transfer_charts(read_report_data(db, "f1").transfer)
    assert set(drawn) == {"h2d_vs_image", "bytes_vs_image"}
    data = drawn["bytes_vs_image"].data
    d2h = data[data["direction"] == "D2H (GPU to host)"]["bytes"].tolist()
    assert d2h == [1256 * 4, 1256 * 4]
    report.write_report(tmp_path / "rep", "t", database=db, folder="f1")
    assert (tmp_path / "rep" / "h2d_vs_image.png").read_bytes()[:4] == b"\x89PNG"


def test_report_shows_the_planted_crossover(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    planted.write_crossover_runs(folder)
    numa_db.load_runs([folder], db)
    (row,) = read_report_data(db, "f1").crossover.to_dict("records")
    assert row["first_compute_dominated_model"] == "d16"
    assert row["crossover_flops_estimate"] == pytest.approx(planted.CROSSOVER_FLOPS, rel=1e-6)
    data = read_report_data(db, "f1")
    chart = charts.crossover_chart(data.crossover_models, data.crossover)
    assert chart.layer[1].data["at"].tolist() == [pytest.approx(planted.CROSSOVER_FLOPS, rel=1e-6)]  # the rule
    index = report.write_report(tmp_path / "rep", "t", database=db, folder="f1")
    crossover_html = index.read_text().split("<h2>Crossover", 1)[1].split("</table>", 1)[0]
    assert "<td>d16</td>" in crossover_html and "<td>1.2e+09</td>" in crossover_html and "<td>d8</td>" in crossover_html
    assert "crossover" in json.loads((tmp_path / "rep" / "report.json").read_text())["charts"]
    assert (tmp_path / "rep" / "crossover.png").read_bytes()[:4] == b"\x89PNG"


def test_report_crossover_is_scoped_to_its_folder(tmp_path):
    db = tmp_path / "db.duckdb"
    planted.write_crossover_runs(tmp_path / "f1")
    for depth in planted.DEPTHS[:3]:  # another folder: small models only, no crossover
        planted.write(tmp_path / "f2", planted.sized_run(f"f2.d{depth}", depth))
    numa_db.load_runs([tmp_path / "f1", tmp_path / "f2"], db)
    assert read_report_data(db, "f2").crossover["first_compute_dominated_model"].tolist() == [None]
    assert read_report_data(db, "f1").crossover["first_compute_dominated_model"].tolist() == ["d16"]


def test_guide_quotes_the_crossover(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    planted.write_crossover_runs(folder)
    numa_db.load_runs([folder], db)
    guide = _guide(tmp_path, db).read_text()
    assert ("from **d16** on (1.6e+09 FLOPs/sample, 1.6e+07 parameters; "
            "interpolated crossover 1.2e+09 FLOPs/sample)") in guide


def test_numa_penalty_skips_a_placement_without_a_headline(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for place, rate in (("local", 90.0), ("remote", None)):  # the remote run has no samples/s: no process to count
        rec = record(f"f1.{place}", device="cuda", placement=place, gpu_id=0,
                     metrics={"samples_per_s": rate, "trial_samples_per_s": {"serial": [100.0, 101.0, 99.0]}})
        rec["model"]["name"] = "m"
        results.write_json_atomic(folder / "runs" / f"{rec['run_id']}.json", rec)
    numa_db.load_runs([folder], db)
    assert report.numa_penalties(read_report_data(db, "f1")).empty
    assert "NUMA penalty" in report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text()


def test_numa_penalty_needs_no_trials(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for place, rates in (("local", (100.0, 100.2)), ("remote", (80.0, 80.16))):
        for i, rate in enumerate(rates):  # headlines only: a process is one draw, its trials are not
            rec = record(f"f1.{place}{i}", device="cuda", placement=place, gpu_id=0, metrics={"samples_per_s": rate})
            rec["model"]["name"] = "m"
            results.write_json_atomic(folder / "runs" / f"{rec['run_id']}.json", rec)
    numa_db.load_runs([folder], db)
    (row,) = report.numa_penalties(read_report_data(db, "f1")).to_dict("records")
    assert row["penalty"] == pytest.approx(0.2) and row["verdict"] == "measured"


def test_guide_says_the_crossover_lies_below_the_smallest_model(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for depth in planted.DEPTHS[-2:]:  # d16 and d32 only: compute-dominated, no copy-dominated model measured
        planted.write(folder, planted.sized_run(f"f1.d{depth}", depth))
    numa_db.load_runs([folder], db)
    guide = _guide(tmp_path, db).read_text()
    assert "from **d16** on" in guide and "the crossover lies below it" in guide
    assert "smaller models are transfer-dominated" not in guide
    assert "## Scaling laws" not in guide  # two models: nothing to fit


def test_a_depth_sweep_and_a_dim_sweep_are_fitted_apart(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for study, exponent in (("depth_scaling", 1.0), ("dim_scaling", 0.5)):
        for i, params in enumerate((1e6, 2e6, 4e6, 8e6)):
            rec = record(f"f1.{study}.{i}", samples_per_s=1.0 / (1e-9 * params**exponent), study=study)
            rec["metrics"]["parameters"] = params
            rec["model"]["name"] = f"{study}{i}"
            results.write_json_atomic(folder / "runs" / f"{rec['run_id']}.json", rec)
    numa_db.load_runs([folder], db)
    laws = analysis.scaling_laws(read_report_data(db, "f1").law_points).set_index("study")
    assert laws.loc["depth_scaling", "exponent"] == pytest.approx(1.0, abs=1e-3)
    assert laws.loc["dim_scaling", "exponent"] == pytest.approx(0.5, abs=1e-3)
    guide = _guide(tmp_path, db).read_text()
    assert ("depth_scaling (eager, 32 px, batch 4, 4 models): "
            "s/sample = 1e-09 * params^1.000, R^2 1.000: linear.") in guide


def test_compile_chart_is_scoped_to_its_folder(tmp_path):
    db = tmp_path / "db.duckdb"
    for name, speedup in (("f1", 1.5), ("f2", 3.0)):  # the same model in both folders, another speed-up
        rec = record(f"{name}.m", folder=name,
                     metrics={"samples_per_s": 100.0, "execution": "compile", "compile_speedup": speedup})
        rec["model"]["name"] = "m"
        planted.write(tmp_path / name, rec)
    numa_db.load_runs([tmp_path / "f1", tmp_path / "f2"], db)
    assert (charts.compile_chart(read_report_data(db, "f1").compile).data[["model_name", "speedup"]].values.tolist()
            == [["m", 1.5]])
    assert (charts.compile_chart(read_report_data(db, "f2").compile).data[["model_name", "speedup"]].values.tolist()
            == [["m", 3.0]])
    # everything: both folders
    assert charts.compile_chart(read_report_data(db).compile).data["speedup"].tolist() == [2.25]
    assert charts.compile_chart(read_report_data(db, "f1'; --").compile) is None  # a folder name is a value, never SQL


def test_a_folders_guide_quotes_its_own_runs_only(tmp_path):
    db = tmp_path / "db.duckdb"
    for name, local, remote in (("f1", 100.0, 80.0), ("f2", 200.0, 100.0)):  # penalties 20% and 50%
        _processes(tmp_path / name, {"local": (local, local * 1.001), "remote": (remote, remote * 1.001)})
    numa_db.load_runs([tmp_path / "f1", tmp_path / "f2"], db)
    report.write_report(tmp_path / "rep1", "t", database=db, folder="f1")
    guide = (tmp_path / "rep1" / "best_practices.md").read_text()
    assert "remote placement costs 20.0% of samples/s" in guide and "100 samples/s" in guide
    assert ("50.0%" not in guide and "40.0%" not in guide and "200 samples/s" not in guide
            and "150 samples/s" not in guide)
    report.write_report(tmp_path / "rep", "t", database=db)  # the cumulative guide: every folder's runs
    guide = (tmp_path / "rep" / "best_practices.md").read_text()
    # 4 processes a side, two hosts' worth apart
    (status,) = numa_db.query("SELECT status FROM numa_penalty", database=db)[0]
    assert status.startswith("not detectable at this noise (MDE ") and f"{status};" in guide
    assert "20.0%" not in guide and "50.0%" not in guide and "4 local and 4 remote processes" in guide


def test_regression_chart_keeps_configs_that_share_a_label(tmp_path):
    db = tmp_path / "db.duckdb"
    verdicts = [{"night": "n2", "baseline": "n1", "config_key": key, "config": "nightly lane m 224px b8 eager",
                 "tonight_mean": 90.0, "tonight_low": 88.0, "tonight_high": 92.0, "baseline_mean": 100.0,
                 "baseline_low": 98.0, "baseline_high": 102.0, "change": change, "verdict": verdict, "error": None}
                for key, change, verdict in (("k1", -0.1, "regression"), ("k2", 0.0, "same"))]
    regressions.save_verdicts("nightly_sweep", verdicts, False, db)
    data = charts.regression_chart(read_report_data(db).regressions).data
    assert sorted(zip(data["change"], data["verdict"], strict=True)) == [(-0.1, "regression"), (0.0, "same")]
    assert set(data["config"]) == {"nightly lane m 224px b8 eager"}


def test_heatmap_and_guide_show_the_same_penalty_per_config(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for batch, local, remote in ((4, 100.0, 80.0), (16, 400.0, 200.0)):  # 20% at batch 4, 50% at batch 16
        for place, rate in (("local", local), ("remote", remote)):
            _processes(folder, {place: (rate, rate * 1.001)}, batch=batch, numa_distance=10 if place == "local" else 21)
    numa_db.load_runs([folder], db)
    data = charts.sensitivity_heatmap(read_report_data(db, "f1").penalty).data
    remote = data[data["placement"] == "remote (d=21)"].set_index("config")["relative"].round(6).to_dict()
    assert remote == {"m (eager, 32 px, batch 4) | gpu0": 0.8, "m (eager, 32 px, batch 16) | gpu0": 0.5}
    assert set(data[data["placement"] == "local (d=10)"]["relative"]) == {1.0}
    guide = _guide(tmp_path, db, "f1").read_text()
    assert "remote placement costs 20.0% of samples/s" in guide and "remote placement costs 50.0% of samples/s" in guide


def _crossover_runs(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    planted.write_crossover_runs(folder)
    numa_db.load_runs([folder], db)
    return db


def test_report_waits_for_a_load_in_another_process(tmp_path):
    db = _crossover_runs(tmp_path)
    index = waits_for_writer(db, lambda: report.write_report(tmp_path / "rep", "t", database=db, folder="f1"))
    assert "Crossover" in index.read_text() and (tmp_path / "rep" / "best_practices.md").is_file()


def test_report_held_up_past_its_wait_fails_clearly(tmp_path):
    db = _crossover_runs(tmp_path)
    with writer_holding(db), pytest.raises(numa_db.StoreBusyError, match=f"lock file {re.escape(str(db))}.lock"):
        report.write_report(tmp_path / "rep", "t", database=db, folder="f1", lock_timeout_s=0.2)
    assert not (tmp_path / "rep" / "index.html").exists()


def test_report_lets_go_of_the_database_before_rendering(tmp_path, monkeypatch):
    db = _crossover_runs(tmp_path)
    html_page = page.page_html

    def free_then_page(*args, **kwargs):
        lock = FileLock(numa_db.lock_path(db), timeout=0)
        lock.acquire()  # Timeout if the report still held it
        lock.release()
        duckdb.connect(str(db)).close()  # a writer may open it (refused while our read connection is open)
        return html_page(*args, **kwargs)

    monkeypatch.setattr(page, "page_html", free_then_page)
    assert "Crossover" in report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text()


def test_readers_take_an_open_connection_too(tmp_path):
    db = _crossover_runs(tmp_path)
    by_path = read_report_data(db, "f1").crossover
    with numa_db.read_connection(db) as con:
        pd.testing.assert_frame_equal(read_report_data(con, "f1").crossover, by_path)
        # same thread, same file: no second lock
        pd.testing.assert_frame_equal(read_report_data(db, "f1").crossover, by_path)
        data = read_report_data(con, "f1")
        assert charts.crossover_chart(data.crossover_models, data.crossover) is not None


def test_pinned_and_pageable_runs_are_fitted_apart(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for pinned, exponent in ((True, 1.0), (False, 0.5)):
        for i, params in enumerate((1e6, 2e6, 4e6, 8e6)):
            rec = record(f"f1.{pinned}.{i}", samples_per_s=1.0 / (1e-9 * params**exponent), study="depth_scaling")
            rec["metrics"].update(parameters=params, pool_pinned=pinned)
            rec["model"]["name"] = f"p{i}"
            planted.write(folder, rec)
    numa_db.load_runs([folder], db)
    laws = analysis.scaling_laws(read_report_data(db, "f1").law_points).set_index("host_memory")
    assert laws.loc["pinned", "exponent"] == pytest.approx(1.0, abs=1e-3)
    assert laws.loc["pageable", "exponent"] == pytest.approx(0.5, abs=1e-3)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT pinned_memory, count(*) FROM scaling GROUP BY ALL ORDER BY ALL").fetchall() == [
            (False, 4), (True, 4)]
    report.write_report(tmp_path / "rep", "t", database=db, folder="f1")
    guide = (tmp_path / "rep" / "best_practices.md").read_text()
    assert "(eager, 32 px, batch 4, pinned host memory, 4 models): s/sample = 1e-09 * params^1.000" in guide
    assert "(eager, 32 px, batch 4, pageable host memory, 4 models)" in guide and "params^0.500" in guide
    fastest = [line for line in guide.splitlines() if line.startswith("- **p")]
    assert fastest and all("host memory" in line for line in fastest)  # every answer names which one


def test_a_folders_report_says_what_it_was_asked_for(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    results.write_json_atomic(folder / "runs" / "f1.bad.json", record("f1.bad", success=False))
    results.write_json_atomic(folder / "plan.json", {
        "phase": "phase2_numa_locality", "dag_run": "manual__2026-12-01", "params": {
            "overrides": ["experiment.test.batch_size=8"], "sweeps": [], "num_samples": 300},
        "studies": {"main": [{"test": {"num_samples": 300}}]}, "lanes": []})
    numa_db.load_runs([folder], db)
    page = report.write_report(folder / "report", "t", database=db, folder="f1").read_text()
    assert ('<p class="request" id="request">phase phase2_numa_locality, DAG run manual__2026-12-01, '
            "num_samples 300, overrides: experiment.test.batch_size=8</p>") in page
REASON = ("worker exited with code 1:\nTraceback (most recent call last):\n  File \"<x>\", line 3\n"
          "RuntimeError: CUDA error & <b>out of memory</b>\n```inside```")


def test_a_multi_line_failure_reason_is_shown_as_recorded(tmp_path):
    """The page (also the UI's "NUMA report" tab, which serves it) keeps the reason's line breaks and escapes it;
    the guide quotes it line for line."""
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    results.write_json_atomic(folder / "runs" / "f1.ok.json", record("f1.ok"))
    results.write_json_atomic(folder / "runs" / "f1.bad.json", record("f1.bad", success=False, error=REASON))
    results.write_json_atomic(folder / "runs" / "f1.none.json", record("f1.none", success=False, error=None))
    numa_db.load_runs([folder], db)
    out = tmp_path / "rep"
    page_text = report.write_report(out, "t", database=db, folder="f1").read_text()
    cell = re.search(r'<td class="reason">(.*?)</td>', page_text, re.S).group(1)
    assert cell == REASON.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    assert "\\n" not in cell and cell.count("\n") == REASON.count("\n")
    assert "<b>out of memory</b>" not in page_text
    assert "td.reason{white-space:pre-wrap" in page_text
    assert '<td class="reason">no reason recorded</td>' in page_text
    guide_text = (out / "best_practices.md").read_text()
    block = guide_text.split("- `f1.bad` (lane `cpu-cpu0-mem0`, model bad):\n\n", 1)[1]
    assert block.startswith("    ````text\n")  # a fence longer than the reason's own backticks
    quoted = [line.removeprefix("    ") for line in block.splitlines()[1:REASON.count("\n") + 2]]
    assert quoted == REASON.splitlines()
