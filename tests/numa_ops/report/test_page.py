"""The page a performance engineer reads: every figure with its interval and the processes and trials behind it,
the gate's verdict and the host at the top, failed runs with their reasons, numbers for people, honest pooling."""

from __future__ import annotations

import json
import re

import pytest
from numa_ops import db as numa_db
from numa_ops import report, results
from numa_ops.report import charts
from numa_ops.report.format import human

from tests.numa_ops.records import record

TOPOLOGY = {"host": "vm", "nodes": [{"id": 0, "cpus": [0, 1], "mem_total_mb": 14810}], "distances": {"0": [10]},
            "gpus": [], "notes": ["no NVIDIA GPU found: runs use the CPU",
                                  "one NUMA node: no remote placement exists on this host"]}
GATE = {"passed": True, "planned": 3, "problems": [], "failure_rate": 0.0,
        "sentence": "gate passed: 3 run(s), every 95% interval within ±5%.", "summary": "gate passed: 0/3 runs failed"}


def _cpu_run(run_id: str, rate: float, lane: str = "cpu-cpu0-mem0", **metrics):
    """A CPU run as the quick start writes it: a headline with its interval over 8 trials."""
    rec = record(run_id, samples_per_s=rate, lane=lane)
    rec["model"]["name"] = "tiny"
    rec["metrics"].update(trials=8, samples_per_s_ci={"low": rate * 0.98, "high": rate * 1.02, "level": 0.96},
                          flops_per_sample=239988736, **metrics)
    return rec


@pytest.fixture
def quick_start(tmp_path):
    """A run folder like the quick start's: CPU runs, one failed, topology and gate.json saved; its report."""
    folder, db = tmp_path / "qs", tmp_path / "db.duckdb"
    for rec in (_cpu_run("qs.a", 200.0), _cpu_run("qs.b", 100.0, lane="cpu-cpu1-mem1"),
                record("qs.bad", folder="qs", success=False, lane="cpu-cpu0-mem0")):
        rec["folder"] = "qs"
        results.write_json_atomic(folder / "runs" / f"{rec['run_id']}.json", rec)
    results.write_json_atomic(folder / "gate.json", GATE)
    numa_db.load_runs([folder], db)
    index = report.write_report(folder / "report", "numa-lab: qs", database=db, folder="qs", topology=TOPOLOGY)
    return {"page": index.read_text(), "db": db, "folder": folder}


def _body(page: str) -> str:
    """The page without Vega's bundle and the chart specs (what a reader sees)."""
    return re.sub(r"<script>.*?</script>", "", page, flags=re.S)


@pytest.mark.parametrize("word", ["95% CI", "confidence", "trials", "worker processes"], ids=str)
def test_the_cpu_page_says_its_intervals_and_evidence(quick_start, word):
    assert word in _body(quick_start["page"])


def test_each_lane_row_has_its_interval_and_its_trials(quick_start):
    table = _body(quick_start["page"]).split("<h2>Per model and lane", 1)[1].split("</table>", 1)[0]
    assert "<td>196 to 204</td>" in table  # the one process's own interval over its trials
    assert "<td>one process: its trials only</td>" in table
    assert re.search(r"<td>200</td>\s*<td>196 to 204</td>\s*<td>one process: its trials only</td>"
                     r"\s*<td>1</td>\s*<td>1</td>"
                     r"\s*<td>8</td>", table), "samples/s, 95% CI, basis, processes, runs, trials in order"


def test_the_gate_verdict_and_the_host_come_before_the_charts(quick_start):
    page = _body(quick_start["page"])
    charts_at = page.index("class='charts'")
    assert 0 < page.index("Gate verdict:") < page.index("Host topology") < charts_at
    assert GATE["sentence"] in page.split("class='charts'", 1)[0]
    assert "<td>0-1</td>" in page and "<td>14,810</td>" in page  # the node's CPUs and memory


def test_a_report_judges_the_gate_itself_when_the_gate_has_not_run_yet(tmp_path):
    folder, db = tmp_path / "p1", tmp_path / "db.duckdb"
    rec = _cpu_run("p1.a", 100.0)
    rec["folder"] = "p1"
    results.write_json_atomic(folder / "runs" / "p1.a.json", rec)
    lane = {"name": "cpu-cpu0-mem0", "runs": [{"run_id": "p1.a"}]}
    results.write_json_atomic(folder / "plan.json",
                              {"phase": "phase1_framework_validation", "lanes": [lane], "runs": 1})
    numa_db.load_runs([folder], db)
    page = report.write_report(folder / "report", "t", database=db, folder="p1").read_text()
    verdict = json.loads((folder / "gate.json").read_text())
    assert f"Gate verdict:</b> {verdict['sentence']}" in page.replace("&#x27;", "'")


def test_failed_runs_are_listed_with_their_reasons(quick_start):
    failed = _body(quick_start["page"]).split("<h2>Failed runs</h2>", 1)[1].split("</table>", 1)[0]
    assert ("<td>qs.bad</td>" in failed and "<td>cpu-cpu0-mem0</td>" in failed
            and "<td class=\"reason\">boom</td>" in failed)


def test_numbers_read_as_numbers_and_nothing_reads_none(quick_start):
    page = _body(quick_start["page"])
    assert "<td>2.40e8</td>" in page and "239988736" not in page
    cells = re.findall(r"<td>(.*?)</td>", page)
    assert cells and not {"None", "nan", "NaN", "NaT"} & set(cells)


@pytest.mark.parametrize(("value", "shown"), [(239988736.0, "2.40e8"), (None, "-"), (float("nan"), "-"), (0.0, "0"),
                                               (12.3456, "12.3"), (0.21042, "0.210"), (1234, "1,234"),
                                               (4e-5, "4.00e-5"), (True, "yes"), ("words", "words")],
                         ids=["large", "none", "nan", "zero", "tens", "share", "integer", "small", "flag", "text"])
def test_human_numbers(value, shown):
    assert human(value) == shown


@pytest.mark.parametrize(("setting", "values", "words"), [
    ("num_samples", (16, 64), "samples per run"), ("memory_size_mb", (1, 256), "host pool MB"),
    ("d2h_mode", ("outputs", "tokens"), "D2H mode"),
], ids=["num_samples", "memory_size_mb", "d2h_mode"])
def test_runs_measured_with_other_settings_are_separate_rows_that_name_the_setting(tmp_path, setting, values, words):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for run_id, value in zip(("f1.a", "f1.b"), values, strict=True):  # one lane and model, one setting apart
        rec = _cpu_run(run_id, 100.0)
        rec["test"][setting] = value
        results.write_json_atomic(folder / "runs" / f"{run_id}.json", rec)
    numa_db.load_runs([folder], db)
    page = _body(report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text())
    table = page.split("<h2>Per model and lane", 1)[1].split("</table>", 1)[0]
    assert f"<th>{words}</th>" in table and table.count("<td>one process: its trials only</td>") == 2
    assert "between 2 processes" not in table and "pooled settings" not in table
    bars = charts.label_lanes(report.read_report_data(db, "f1").lanes)  # each its own bar, labelled with its setting
    assert bars["row"].nunique() == 2 and all(words in row for row in bars["row"])


def test_runs_of_one_configuration_on_other_software_are_pooled_only_saying_so(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    for run_id, torch in (("f1.a", "2.10"), ("f1.b", "2.11")):
        rec = _cpu_run(run_id, 100.0)
        rec["environment"] = {"torch": torch}
        results.write_json_atomic(folder / "runs" / f"{run_id}.json", rec)
    numa_db.load_runs([folder], db)
    page = _body(report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text())
    assert "pool runs measured with different settings (torch version)" in page
    assert "<th>pooled settings</th>" in page and "<td>torch version</td>" in page
    assert "<td>between 2 processes</td>" in page  # two processes: the interval between them


def test_throughput_bars_carry_error_bars_and_legends_in_words(quick_start):
    data = report.read_report_data(quick_start["db"], "qs")
    from numa_ops import analysis

    lanes = charts.label_lanes(analysis.lane_intervals(data.lanes).query("ok_runs > 0"))
    spec = charts.throughput_chart(lanes).to_dict()
    bars, errors = spec["layer"]
    assert errors["mark"]["type"] == "rule" and errors["encoding"]["y"]["field"] == "rate_low"
    assert errors["encoding"]["y2"]["field"] == "rate_high"
    assert bars["encoding"]["color"]["title"] == "lane: execution, shape"
    assert set(lanes["series"]) == {"cpu-cpu0-mem0: eager, 32 px, batch 4", "cpu-cpu1-mem1: eager, 32 px, batch 4"}
    tooltips = {t.get("title", t["field"]) for t in bars["encoding"]["tooltip"]}
    assert {"95% CI low", "95% CI high", "worker processes", "trials"} <= tooltips


def test_nightly_points_carry_the_range_their_intervals_allow(tmp_path):
    from numa_ops import regressions

    db = tmp_path / "db.duckdb"
    verdict = {"night": "n2", "baseline": "n1", "config_key": "k", "config": "c", "tonight_mean": 90.0,
               "tonight_low": 88.0, "tonight_high": 92.0, "baseline_mean": 100.0, "baseline_low": 98.0,
               "baseline_high": 102.0, "change": -0.1, "verdict": "regression", "error": None}
    regressions.save_verdicts("nightly_sweep", [verdict], False, db)
    spec = charts.regression_chart(report.read_report_data(db).regressions).to_dict()
    rule = spec["layer"][0]
    assert rule["mark"]["type"] == "rule" and rule["encoding"]["y2"]["field"] == "change_high"
    (row,) = spec["datasets"][next(iter(spec["datasets"]))]
    assert row["change_low"] == pytest.approx(88 / 102 - 1) and row["change_high"] == pytest.approx(92 / 98 - 1)


@pytest.mark.parametrize("estimate", [{"gpu_s": 10.0, "wall_s": 20.0}, {"gpu_s": 10.0}],
                         ids=["gpu-and-wall", "gpu-only"])
def test_estimate_against_actual_when_the_plan_kept_one(quick_start, estimate):
    folder = quick_start["folder"]
    results.write_json_atomic(folder / "estimate.json", estimate)
    page = _body(report.write_report(folder / "report", "t", database=quick_start["db"], folder="qs").read_text())
    section = page.split("<h2>Estimate against actual</h2>", 1)[1].split("</table>", 1)[0]
    assert "<td>GPU seconds (the runs' own time)</td>" in section.replace("&#x27;", "'")
    assert "<td>10</td>" in section and "<td>3</td>" in section  # estimated; the three runs' 1 s each
    assert ("wall seconds" in section) == ("wall_s" in estimate)


def test_no_estimate_no_section(quick_start):
    assert "Estimate against actual" not in quick_start["page"]


def test_charts_that_pool_lanes_say_so(tmp_path):
    from tests.numa_ops import planted

    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    planted.write_crossover_runs(folder)  # one lane per model
    numa_db.load_runs([folder], db)
    page = _body(report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text())
    assert "median over all its lanes" not in page
    for depth in planted.DEPTHS:  # the same models measured on a second lane
        rec = planted.sized_run(f"f1.other.d{depth}", depth)
        rec["lane"] = "gpu0-cpu1-mem1"
        planted.write(folder, rec)
    numa_db.load_runs([folder], db)
    page = _body(report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text())
    assert ("The scaling and crossover chart(s) take each model's median over all its lanes"
            in page.replace("&#x27;", "'"))
