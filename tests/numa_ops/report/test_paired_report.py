"""Paired penalties and repeat lanes on the page and in the guide: planted answers through the real load, views
and report."""

from __future__ import annotations

import json
import re

import duckdb
import numpy as np
import pytest
from numa_ops import analysis, report
from numa_ops import db as numa_db

from tests.numa_ops import planted

PLANTED = 0.05  # the remote memory arm runs 5% fewer samples/s


def _body(page: str) -> str:
    return re.sub(r"<script>.*?</script>", "", page, flags=re.S)


def _section(page: str, heading: str) -> str:
    return _body(page).split(f"<h2>{heading}", 1)[1].split("</table>", 1)[0]


@pytest.fixture
def paired_folder(tmp_path):
    """A run folder with a planted 5% memory-arm penalty, a thread-arm A/A run, and a process-mode run
    (older record)."""
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    planted.paired_run(folder, "f1.mem", planted.paired_block("memory", [1000.0, 1000.0 * (1 - PLANTED)], seed=1,
                                                              control_effect=0.1, blocks=16, trials_s=61.0))
    planted.paired_run(folder, "f1.thr", planted.paired_block("thread", [1000.0, 1000.0], seed=5, trials_s=38.0),
                       model="t")
    planted.process_run(folder, "f1.proc", "local", 900.0, pinned=None)
    numa_db.load_runs([folder], db)
    return folder, db


def _view(db):
    with duckdb.connect(str(db), read_only=True) as con:
        cur = con.execute("SELECT * FROM paired_penalty")
        names = [d[0] for d in cur.description]
        return {row[names.index("run_id")]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


@pytest.mark.parametrize("scope", ["folder", "all-runs"])
def test_the_planted_paired_penalty_reaches_the_page_and_the_guide(paired_folder, tmp_path, scope):
    folder, db = paired_folder
    mem, thr = _view(db)["f1.mem"], _view(db)["f1.thr"]
    assert mem["penalty_low"] < PLANTED < mem["penalty_high"] and mem["verdict"] == "measured"
    assert mem["adjusted_penalty_low"] < PLANTED < mem["adjusted_penalty_high"]
    assert (thr["penalty_low"] < 0 < thr["penalty_high"]
            and thr["verdict"].startswith("not detectable at this noise (MDE "))
    out = tmp_path / ("rep" if scope == "all-runs" else "f1/report")
    index = report.write_report(out, "t", database=db, folder="f1" if scope == "folder" else None)
    table = _section(index.read_text(), "Paired NUMA penalties")
    row = table.split("<td>m (eager, 32 px, batch 8, pinned host memory)</td>", 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells == ["DMA (host memory remote, thread local)", "node1 vs node0", f"{mem['penalty']:.1%}",
                     f"{mem['penalty_low']:.1%} to {mem['penalty_high']:.1%}",
                     f"{mem['adjusted_penalty']:.1%} "
                     f"({mem['adjusted_penalty_low']:.1%} to {mem['adjusted_penalty_high']:.1%})",
                     f"{mem['mde']:.1%}", "measured", "16", "61", "target"]
    row = table.split("<td>t (eager, 32 px, batch 8, pinned host memory)</td>", 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[:3] == ["CPU side (thread remote, memory local)", "node1 vs node0", "-"]  # no figure: not detectable
    assert cells[4:7] == ["not used: the thread's node moves the control", f"{thr['mde']:.1%}", thr["verdict"]]
    assert cells[8] == "38"
    assert "paired" in json.loads((out / "report.json").read_text())["charts"]
    assert (out / "paired.png").read_bytes()[:4] == b"\x89PNG"
    guide = (out / "best_practices.md").read_text()
    assert (f"- m (eager, 32 px, batch 8, pinned host memory), DMA (host memory remote, thread local) "
            f"(node1 vs node0): the arm costs "
            f"{mem['penalty']:.1%} of samples/s (95% CI {mem['penalty_low']:.1%} to {mem['penalty_high']:.1%}; "
            f"control-adjusted {mem['adjusted_penalty']:.1%}") in guide
    assert "16 ABBA blocks, 61 GPU seconds, stopped on target" in guide
    assert f"CPU side (thread remote, memory local) (node1 vs node0): {thr['verdict']}" in guide


def test_the_paired_chart_draws_both_intervals_of_a_memory_arm_and_one_of_a_thread_arm(paired_folder):
    _, db = paired_folder
    data = report.read_report_data(db, "f1")
    chart = report.draw_charts(data, analysis.lane_intervals(data.lanes))["paired"]
    drawn = chart.layer[0].data
    kinds = sorted(zip(drawn["row"].str.split(" | ", regex=False).str[1], drawn["interval"], strict=True))
    assert kinds == [("CPU side (thread remote, memory local)", "plain"),
                     ("DMA (host memory remote, thread local)", "control-adjusted"),
                     ("DMA (host memory remote, thread local)", "plain")]


def test_a_placements_repeats_are_one_lane_with_their_between_process_interval(tmp_path):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    rates = {"local": (100.0, 104.0, 98.0), "remote": (80.0, 83.0, 79.0)}
    for place, values in rates.items():
        for i, rate in enumerate(values):
            node = int(place == "remote")
            rec = planted.record(f"f1.{place}{i}", device="cuda", placement=place, gpu_id=0, repeat=i,
                                 lane=f"gpu0-cpu{node}-mem{node}" + (f"-r{i}" if i else ""),
                                 metrics={"samples_per_s": rate, "execution": "eager", "trials": 6,
                                          "samples_per_s_ci": {"low": rate * 0.999, "high": rate * 1.001,
                                                               "level": 0.95}})
            rec["model"]["name"] = "m"
            planted.write(folder, rec)
    numa_db.load_runs([folder], db)
    lanes = analysis.lane_intervals(report.read_report_data(db, "f1").lanes)
    assert sorted(lanes["lane"]) == ["gpu0-cpu0-mem0", "gpu0-cpu1-mem1"]
    for place, values in rates.items():
        (row,) = lanes[lanes["placement"] == place].to_dict("records")
        logs = np.log(values)
        half = analysis.t_quantile(0.975, 2) * logs.std(ddof=1) / np.sqrt(3)
        assert (row["ok_runs"], row["repeat_lanes"], row["ci_basis"]) == (3, 3, "between 3 processes")
        assert (row["rate_low"] == pytest.approx(np.exp(logs.mean() - half))
                and row["rate_high"] == pytest.approx(np.exp(logs.mean() + half)))
    page = _body(report.write_report(tmp_path / "rep", "t", database=db, folder="f1").read_text())
    lanes_table = _section(page, "Per model and lane").split("<table", 1)[1]
    assert ("-r1" not in lanes_table and "-r2" not in lanes_table
            and lanes_table.count("<td>between 3 processes</td>") == 2)
