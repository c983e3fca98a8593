"""Comparing run folders: the A/A false-alarm rate by simulation, a planted slowdown found through the real CLI,
the verdict rules, paired rows, and what is refused."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from numa_ops import compare

from tests.numa_ops import planted
from tests.numa_ops.records import record, typed

NIGHTS = 1000


@pytest.mark.parametrize("processes", [pytest.param(2, id="2-a-side"), pytest.param(3, id="3-a-side")])
def test_aa_comparisons_call_a_regression_in_at_most_5pct_of_comparisons(processes):
    """1000 A/A comparisons of the 8 configurations with the between-process noise measured on an H200: at most 5%
    of them call anything a regression or an improvement (the correction for 8 configurations), never more than
    ~1% of the configuration verdicts."""
    rng = np.random.default_rng(22 + processes)
    false_nights, false_rows, rows_total = 0, 0, 0
    for night in range(NIGHTS):
        rows = compare.compare_records(typed(planted.night_records(rng, f"b{night}", processes)),
                                       typed(planted.night_records(rng, f"c{night}", processes)))
        assert len(rows) == 8 and all(r.family == 8 for r in rows)
        wrong = [r for r in rows if r.verdict in (compare.REGRESSION, compare.IMPROVEMENT)]
        false_nights += bool(wrong)
        false_rows += len(wrong)
        rows_total += len(rows)
    assert false_nights / NIGHTS <= 0.05
    assert false_rows / rows_total <= 0.01


def test_a_10pct_slowdown_of_the_compute_bound_configuration_is_found_nearly_always():
    rng = np.random.default_rng(5)
    found = covered = 0
    for night in range(200):
        rows = compare.compare_records(typed(planted.night_records(rng, f"b{night}", 2)),
                                       typed(planted.night_records(rng, f"c{night}", 2, {planted.COMPUTE_BOUND: 0.10})))
        (row,) = [r for r in rows if r.settings["execution"] == "cuda_graph" and r.settings["host_memory"] == "pinned"
                  and r.settings["model"]["name"] == "heavy_d12"]
        found += row.verdict == compare.REGRESSION
        covered += row.low <= 0.90 <= row.high
    assert found / 200 >= 0.95 and covered / 200 >= 0.97  # each interval is at 1 - 5% / 8


def _write(folder, recs):
    for rec in recs:
        planted.write(folder, rec)
    return folder


def test_the_cli_finds_a_planted_10pct_slowdown_and_exits_1(tmp_path):
    rng = np.random.default_rng(11)
    base = [_write(tmp_path / "base", planted.night_records(rng, "base", 3))]
    cand = [_write(tmp_path / "cand1", planted.night_records(rng, "cand1", 1, {planted.COMPUTE_BOUND: 0.10})),
            _write(tmp_path / "cand2", planted.night_records(rng, "cand2", 2, {planted.COMPUTE_BOUND: 0.10}))]
    result = subprocess.run([sys.executable, "-m", "numa_ops", "compare", "--baseline", *map(str, base),
                             "--candidate", *map(str, cand), "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    rows = json.loads(result.stdout)
    assert len(rows) == 8 and all({"configuration", "ratio", "low", "high", "mde", "verdict"} <= set(r) for r in rows)
    regressed = [r for r in rows if r["verdict"] == "regression"]
    assert [r["configuration"].split("), ")[0] for r in regressed] == [
        "heavy_d12 (cuda_graph, 224x224 px, batch 8, pinned host memory"]
    (row,) = regressed
    assert row["low"] < row["ratio"] < row["high"] < 1 and row["ratio"] == pytest.approx(0.90, abs=0.01)
    assert row["low"] <= 0.90 <= row["high"] and 0 < row["mde"] < 0.05 and row["candidate_n"] == row["baseline_n"] == 3
    assert all(r["verdict"] in ("no change", "not detectable") for r in rows if r is not row)


def test_the_cli_in_words_and_a_folder_that_is_not_a_run_folder(tmp_path):
    from numa_ops import cli

    rng = np.random.default_rng(12)
    base = _write(tmp_path / "base", planted.night_records(rng, "base", 2))
    cand = _write(tmp_path / "cand", planted.night_records(rng, "cand", 2))
    assert cli.main(["compare", "--baseline", str(base), "--candidate", str(cand)]) == 0
    assert cli.main(["compare", "--baseline", str(tmp_path / "nowhere"), "--candidate", str(cand)]) == 2
    with pytest.raises(SystemExit):
        cli.main(["compare", "--baseline", str(base), "--candidate", str(cand), "--tolerance", "5"])


@pytest.mark.parametrize(
    ("low", "high", "want"),
    [pytest.param(0.99, 1.01, "no change", id="inside-tolerance"),
     pytest.param(0.985, 0.995, "no change", id="a-slowdown-within-tolerance"),
     pytest.param(0.85, 0.95, "regression", id="below-1"),
     pytest.param(1.03, 1.10, "improvement", id="above-1"),
     pytest.param(0.90, 1.05, "not detectable", id="holds-1-beyond-tolerance")],
)
def test_verdict_of_an_interval(low, high, want):
    assert compare.verdict(low, high, 0.02) == want


def test_one_process_a_side_gives_no_interval_and_new_or_missing_configurations(tmp_path):
    a = planted.config_run("a.1", planted.COMPUTE_BOUND, 1000.0)
    b = planted.config_run("b.1", planted.COMPUTE_BOUND, 900.0)
    only_base = planted.config_run("a.2", ("light_d2", "eager", "pinned"), 500.0)
    failed = record("b.2", success=False)
    rows = {r.verdict: r for r in compare.compare_records(typed([a, only_base]), typed([b, failed]))}
    assert rows["not detectable"].ratio == pytest.approx(0.9) and rows["not detectable"].low is None
    assert rows["not detectable"].note == compare.ONE_PROCESS
    assert rows["missing"].configuration.startswith("light_d2") and rows["new"].failed
    assert "every candidate run failed" in rows["new"].note


def test_other_test_settings_are_other_configurations():
    a = planted.config_run("a.1", planted.COMPUTE_BOUND, 1000.0)
    b = planted.config_run("b.1", planted.COMPUTE_BOUND, 1000.0, repeat=1)
    c = planted.config_run("c.1", planted.COMPUTE_BOUND, 1000.0)
    c["test"]["memory_size_mb"] = 512
    assert compare.config_key(*typed([a])) == compare.config_key(*typed([b])) != compare.config_key(*typed([c]))
    rows = {r.verdict: r for r in compare.compare_records(typed([a]), typed([c]))}
    assert set(rows) == {"missing", "new"}
    assert rows["new"].note.endswith("settings differ from the other side's (baseline v candidate): "
                                     "test.memory_size_mb 1 v 512")


def _paired(run_id, ratio, rng, blocks=20, sd=0.02):
    rec = planted.config_run(run_id, ("light_d2", "eager", "pinned"), 1000.0)
    diffs = [float(d) for d in math.log(ratio) + rng.normal(0, sd, blocks)]
    rec["placement_mode"] = "paired"
    rec["metrics"]["paired"] = {
        "kind": "memory", "reference": 0,
        "arms": [{"name": "node0", "node": 0}, {"name": "node1", "node": 1}],
        "comparisons": [{"arm": 1, "vs": 0, "blocks": blocks, "block_diffs": diffs, "estimate": float(np.mean(diffs))}]}
    return rec


def test_paired_runs_compare_their_arm_ratio_between_nights():
    """One paired process a side: the arm ratio's change is judged over the blocks; a penalty grown from 2% to
    10% is a regression, an unchanged one is not."""
    rng = np.random.default_rng(3)
    grown = compare.compare_records(typed([_paired("a", 0.98, rng)]), typed([_paired("b", 0.90, rng)]))
    (row,) = [r for r in grown if "node1 vs node0" in r.configuration]
    assert row.verdict == "regression" and row.basis == "paired estimates: blocks of one paired process"
    assert row.low <= 0.90 / 0.98 <= row.high and "node1 vs node0" in row.configuration
    same = compare.compare_records(typed([_paired("a", 0.95, rng)]), typed([_paired("b", 0.95, rng)]))
    assert {r.verdict for r in same if "node1 vs node0" in r.configuration} <= {"no change", "not detectable"}


@pytest.mark.parametrize("split", [pytest.param(((0, 1), (2, 3)), id="p01-v-p23"),
                                   pytest.param(((0, 2), (1, 3)), id="p02-v-p13"),
                                   pytest.param(((0, 3), (1, 2)), id="p03-v-p12")])
def test_held_out_aa_processes_of_an_h100_show_no_change(tmp_path, split):
    """Four worker processes of 6 configurations measured on an H100 (bench/results), two against two: no
    configuration is called a regression or an improvement."""
    import tarfile
    from pathlib import Path

    archive = Path(__file__).parents[2] / "bench" / "results" / "runs" / "aa_repeatability_H100_2026-11-28a.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    folders = [tmp_path / "aa" / "new" / f"p{i:02d}" for i in range(4)]
    rows = compare.compare_folders([folders[i] for i in split[0]], [folders[i] for i in split[1]])
    assert len(rows) == 6 and all(r.baseline_n == r.candidate_n == 2 for r in rows)
    assert {r.verdict for r in rows} <= {"no change", "not detectable"}
