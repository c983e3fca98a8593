"""The A/A repeatability bench's summarizing math (bench/aa_repeatability.py), on the CPU."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("aa_repeatability", REPO / "bench" / "aa_repeatability.py")
aa = importlib.util.module_from_spec(_spec)
sys.modules["aa_repeatability"] = aa
_spec.loader.exec_module(aa)


def test_abba_order_interleaves_versions_and_goes_on_from_a_first_pair():
    assert aa.abba_order(["old", "new"], 3) == [("old", 0), ("new", 0), ("new", 1), ("old", 1), ("old", 2), ("new", 2)]
    assert aa.abba_order(["old", "new"], 2, first=1) == [("new", 1), ("old", 1), ("old", 2), ("new", 2)]


def test_arms_follow_the_process_index_not_the_position():
    assert aa.aa_arms([0, 1, 2, 3, 4, 5]) == ([0, 3, 4], [1, 2, 5])
    # p3 missing (killed): p4 stays in arm A
    assert aa.aa_arms([0, 1, 2, 4, 5]) == ([0, 3], [1, 2, 4])


def test_process_interval_is_the_t_interval_of_the_mean_log():
    values = [100.0, 103.0, 98.0, 101.0, 99.5, 102.0]
    y = np.log(values)
    low, high = stats.t.interval(0.95, len(y) - 1, loc=y.mean(), scale=stats.sem(y))
    ci = aa.proc_ci(values)
    assert ci["rel_half_width"] == pytest.approx(math.expm1((high - low) / 2))
    assert ci["geo_mean"] == pytest.approx(math.exp(y.mean()))
    assert aa.proc_ci([5.0])["rel_half_width"] is None


def test_aa_comparison_matches_a_pooled_t_test_on_logs():
    values = [100.0, 96.0, 97.0, 101.0, 102.0, 95.0, 94.0, 99.0]
    a = np.log([values[i] for i in (0, 3, 4, 7)])
    b = np.log([values[i] for i in (1, 2, 5, 6)])
    res = stats.ttest_ind(b, a, equal_var=True)
    ci = res.confidence_interval(0.95)
    out = aa.aa_compare(values)
    d = b.mean() - a.mean()
    assert out["penalty"] == pytest.approx(-math.expm1(d))
    assert out["low"] == pytest.approx(-math.expm1(ci.high))
    assert out["high"] == pytest.approx(-math.expm1(ci.low))
    assert out["contains_0"] == (ci.low <= 0 <= ci.high)
    se = abs(d / res.statistic)
    df = len(a) + len(b) - 2
    assert out["mde"] == pytest.approx(math.expm1((stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * se))
    # A slower arm B: the penalty is positive and the interval excludes 0
    skewed = [100, 80, 81, 99, 101, 79, 80, 100]
    out = aa.aa_compare([float(v) for v in skewed])
    assert out["penalty"] > 0.15 and out["contains_0"] is False
    # too few for an interval: a point estimate at most, never a crash
    assert aa.aa_compare([100.0, 90.0])["low"] is None
    assert aa.aa_compare([100.0])["penalty"] is None
    assert aa.aa_compare([])["penalty"] is None


def test_cuped_explains_a_control_that_drives_the_headline():
    rng = np.random.default_rng(3)
    control = np.exp(rng.normal(0, 0.1, 8))
    head = 1000 * control ** 0.9 * np.exp(rng.normal(0, 0.002, 8))
    out = aa.cuped(list(head), list(control))
    assert out["r2"] > 0.99
    assert out["theta"] == pytest.approx(0.9, abs=0.05)
    assert out["rel_half_width"] < aa.proc_ci(list(head))["rel_half_width"] / 5
    unrelated = aa.cuped(list(1000 * np.exp(rng.normal(0, 0.05, 8))), list(control))
    assert unrelated["r2"] < 0.7
    assert aa.cuped([1.0, 2.0], [1.0, 2.0])["r2"] is None
    assert aa.cuped([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])["r2"] is None


def test_worker_env_puts_the_version_in_front_of_an_existing_pythonpath(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", "/tmp/site")
    env = aa.worker_env(tmp_path / "plugins")
    assert env["PYTHONPATH"].split(":") == [str(tmp_path / "plugins"), "/tmp/site"]
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_specs_carry_what_both_workers_read():
    tests = [{"batch_size": 8} for _ in aa.CONFIGS]
    old = aa.build_specs("old", 3, tests, 0, smoke=False)
    new = aa.build_specs("new", 3, tests, 0, smoke=False)
    ids = [s["run_id"] for s in old + new]
    assert len(set(ids)) == len(ids) == 12
    assert all(aa.RUN_ID.match(i) for i in ids)
    for spec in old + new:
        for key in ("folder", "study", "experiment", "sweep_point", "model", "test", "profile", "hardware", "gpu_id",
                    "cpu_node", "mem_node", "placement", "numa_distance", "lane", "run_id"):
            assert key in spec
    assert "placement_mode" not in old[0] and new[0]["placement_mode"] == "process" and new[0]["repeat"] == 3


def test_fallback_test_defaults_match_the_new_testconfig():
    from numa_ops.config import TestConfig

    dumped = TestConfig(num_samples=1, batch_size=1, tensor_shape=[3, 8, 8], memory_size_mb=1).model_dump()
    for key, value in aa.TEST_DEFAULTS["new"].items():
        if key in dumped:
            assert dumped[key] == value, key


@pytest.fixture(scope="module")
def old_plugins(tmp_path_factory) -> Path:
    """The old version's plugins folder: ``.bench_old/plugins`` where extracted, else extracted from git history."""
    extracted = REPO / ".bench_old" / "plugins"
    if extracted.exists():
        return extracted
    archive = subprocess.run(["git", "-C", str(REPO), "archive", aa.OLD_COMMIT, "plugins"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"needs the old version: a git checkout with commit {aa.OLD_COMMIT}, or .bench_old/plugins")
    target = tmp_path_factory.mktemp("bench_old")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target / "plugins"


def test_fallback_test_defaults_match_the_old_testconfig(old_plugins):
    code = ("import json; from numa_ops.config import TestConfig; print(json.dumps(TestConfig(num_samples=1, "
            "batch_size=1, tensor_shape=[3, 8, 8], memory_size_mb=1).model_dump()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=aa.worker_env(old_plugins))
    dumped = json.loads(out.stdout)
    base = {"num_samples", "batch_size", "tensor_shape", "memory_size_mb"}
    assert {k: v for k, v in dumped.items() if k not in base} == aa.TEST_DEFAULTS["old"]


def _record(version: str, proc: int, config: str, rate: float, **metrics):
    return {"run_id": f"aa.{version}.p{proc:02d}.{config}", "success": True,
            "metrics": {"samples_per_s": rate, **metrics}}


def test_summary_from_a_tarball_tolerates_old_records_and_puts_the_table_last(tmp_path):
    cfg = "light_d2.cuda_graph.pinned"
    root = tmp_path / "aa"
    rates = [1000, 1010, 990, 1005, 995, 1002]
    for k, rate in enumerate(rates):
        for version, extra in (("old", {}), ("new", {
            "samples_per_s_ci": {"rel_half_width": 0.004}, "cpu_control_rate": 5e5 * rate / 1000,
            "pipelined_vs_ideal": 0.97, "pipelined_samples_per_s_ci": {"low": 1900.0}, "ideal_samples_per_s": 2000.0,
            "binding_stage": "forward", "h2d_gbps": 50.1, "d2h_gbps": 12.0, "d2h_ms": {"median": 0.0031}})):
            path = root / version / f"p{k:02d}" / "runs" / f"aa.{version}.p{k:02d}.{cfg}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_record(version, k, cfg, float(rate), **extra)))
    failed = root / "new" / "p06" / "runs" / f"aa.new.p06.{cfg}.json"
    failed.parent.mkdir(parents=True)
    failed.write_text(json.dumps({"run_id": f"aa.new.p06.{cfg}", "success": False, "metrics": None}))
    (root / "manifest.json").write_text(json.dumps({"versions": ["old", "new"], "order": [], "runs": [],
                                                     "stopped": "budget: stopped before process 13/14"}))
    tar = tmp_path / "records.tar.gz"
    with tarfile.open(tar, "w:gz") as fh:
        fh.add(root, arcname="aa")
    md = tmp_path / "aa.md"
    assert aa.main(["summarize", "--records", str(tar), str(root), "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "NOTE: budget: stopped" in text
    table = [line for line in text.splitlines() if line.startswith("| light_d2")]
    assert text.rstrip().splitlines()[-1] == table[-1]
    old_row, new_row = (line.split(" | ") for line in table)
    assert old_row[1] == "old" and old_row[2] == "6" and old_row[12] == "-"  # no control in old records
    assert new_row[2] == "6 (+1 failed)"
    assert new_row[12] == "1.00"  # the control explains the headlines
    assert new_row[15] == "6/6" and new_row[16] == "forward" and new_row[19].startswith("0.0031")


def test_summarize_refuses_a_folder_without_records(tmp_path):
    with pytest.raises(SystemExit):
        aa.main(["summarize", "--records", str(tmp_path)])
