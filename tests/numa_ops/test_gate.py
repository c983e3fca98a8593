from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numa_ops import analysis, results
from numa_ops.gate import judge_run_folder
from numa_ops.phases import Gate, load_phases

from tests.numa_ops import planted
from tests.numa_ops.records import record


def _folder(tmp_path, records, planned=None):
    """A run folder whose plan names ``planned`` runs ``f1.r<i>`` (None: exactly the records' runs)."""
    folder = tmp_path / "f1"
    run_ids = [f"f1.r{i}" for i in range(planned)] if planned is not None else [r["run_id"] for r in records]
    results.write_json_atomic(folder / "plan.json", {"lanes": [{"runs": [{"run_id": r} for r in run_ids]}]})
    for rec in records:
        results.write_json_atomic(folder / "runs" / f"{rec['run_id']}.json", rec)
    return folder


def _ok(run_id, width):
    return record(run_id, metrics={"samples_per_s": 10.0, "trials": 8, "samples_per_s_ci": {"rel_half_width": width}})


def test_passes_when_complete_and_shows_each_runs_own_interval(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.01), _ok("f1.r1", 0.02)], 2)
    verdict = judge_run_folder(folder, Gate(max_failure_rate=0.0)).to_json()
    assert verdict["passed"] and verdict["problems"] == []
    assert verdict["intervals"] == ["f1.r0: ±1.0% over 8 trials (its own trials)",
                                    "f1.r1: ±2.0% over 8 trials (its own trials)"]
    assert json.loads((folder / "gate.json").read_text())["passed"]


@pytest.mark.parametrize("width", [pytest.param(0.30, id="wide-interval"), pytest.param(None, id="no-interval")])
def test_a_runs_own_interval_never_fails_the_gate(tmp_path, width):
    """A launch-bound run measured ±30% over its trials (or with one trial, no interval at all) passes: its own
    trials say nothing of the noise between processes that a comparison stands on."""
    rec = record("f1.r0", metrics={"samples_per_s": 5000.0, "trials": 1 if width is None else 8,
                                   "binding_stage": "cpu_issue",
                                   "samples_per_s_ci": {"rel_half_width": width,
                                                        "level": None if width is None else 0.95}})
    verdict = judge_run_folder(_folder(tmp_path, [rec], 1), Gate(max_failure_rate=0.0, max_mde=0.05)).to_json()
    assert verdict["passed"] and verdict["sentence"] == "gate passed: 1 of 1 run(s) measured."
    assert verdict["intervals"] == ["f1.r0: ±30.0% over 8 trials (its own trials)" if width else
                                    "f1.r0: no interval over its trials (1 trial(s))"]


def test_names_failed_and_missing_runs(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.30), record("f1.r1", success=False)], 3)
    verdict = judge_run_folder(folder, Gate(max_failure_rate=0.5)).to_json()
    assert not verdict["passed"]
    assert verdict["failure_rate"] == 2 / 3
    assert verdict["problems"] == ["f1.r1: failed: boom", "f1.r2: no record (never ran)"]


def test_failure_rate_threshold(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.01), record("f1.r1", success=False)], 2)
    assert judge_run_folder(folder, Gate(max_failure_rate=0.5)).to_json()["passed"]
    assert not judge_run_folder(folder, Gate(max_failure_rate=0.49)).to_json()["passed"]


def test_a_failed_step_fails_the_gate_in_one_sentence(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.01)], 1)
    verdict = judge_run_folder(folder, Gate(max_failure_rate=0.0), ["report"]).to_json()
    assert not verdict["passed"] and verdict["problems"] == ["report: the task failed"]
    assert verdict["sentence"] == "gate FAILED: report failed. To do: read the failed task's log."


def test_failed_runs_say_where_the_reason_is(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.01), record("f1.r1", success=False)], 2)
    sentence = judge_run_folder(folder, Gate(max_failure_rate=0.0)).to_json()["sentence"]
    assert "1 of 2 run(s) failed or never ran (r1 on cpu-cpu0-mem0 failed: boom" in sentence
    assert "folder=" in sentence and "\n" not in sentence


def _placement_runs(rng, sd, processes=3, penalty=0.05):
    """``processes`` local and remote worker processes of a launch-bound or a compute-bound configuration."""
    recs = []
    for place, factor in (("local", 1.0), ("remote", 1 - penalty)):
        for i in range(processes):
            rec = planted.config_run(f"f1.{place}{i}", ("light_d2", "eager", "pinned"),
                                     1000 * factor * float(np.exp(rng.normal(0, sd))), repeat=i)
            rec.update(placement=place, cpu_node=int(place == "remote"), mem_node=int(place == "remote"))
            recs.append(rec)
    return recs


@pytest.mark.parametrize(("sd", "passed"), [pytest.param(0.172, False, id="launch-bound-3v3"),
                                            pytest.param(0.0019, True, id="compute-bound-3v3")])
def test_a_placement_comparison_whose_mde_exceeds_the_limit_fails(tmp_path, sd, passed):
    recs = _placement_runs(np.random.default_rng(4), sd)
    verdict = judge_run_folder(_folder(tmp_path, recs), Gate(max_failure_rate=0.0, max_mde=0.05)).to_json()
    (comp,) = verdict["comparisons"]
    local = [r["metrics"]["samples_per_s"] for r in recs if r["placement"] == "local"]
    remote = [r["metrics"]["samples_per_s"] for r in recs if r["placement"] == "remote"]
    assert comp["mde"] == pytest.approx(analysis.process_penalty(local, remote).mde)
    assert comp["basis"] == "between processes, 3 local v 3 remote" and "local v remote" in comp["configuration"]
    assert verdict["passed"] == passed
    if not passed:
        sentence = verdict["sentence"]
        assert sentence.startswith("gate FAILED: 1 comparison(s) cannot see a 5% effect (light_d2 ")
        assert f"MDE {comp['mde']:.1%}" in sentence and "experiment.hardware.placement=paired" in sentence
        assert "\n" not in sentence and sentence.count(". ") == 1
    # without a limit the same comparison is listed, never judged
    assert judge_run_folder(_folder(tmp_path, recs), Gate(max_failure_rate=0.0)).to_json()["passed"]


def _paired_run(run_id, mde):
    rec = planted.config_run(run_id, ("light_d2", "eager", "pinned"), 1000.0)
    rec["placement_mode"] = "paired"
    rec["metrics"]["paired"] = {"kind": "memory", "reference": 0,
                                "arms": [{"name": "node0"}, {"name": "node1"}],
                                "comparisons": [{"arm": 1, "vs": 0, "blocks": 40, "mde": mde}]}
    return rec


@pytest.mark.parametrize(("mde", "passed"),
                         [pytest.param(0.031, True, id="within"), pytest.param(0.081, False, id="above")])
def test_a_paired_comparison_is_judged_by_its_mde(tmp_path, mde, passed):
    verdict = judge_run_folder(_folder(tmp_path, [_paired_run("f1.p0", mde)]),
                               Gate(max_failure_rate=0.0, max_mde=0.05)).to_json()
    assert verdict["passed"] == passed
    assert verdict["comparisons"] == [{"configuration": verdict["comparisons"][0]["configuration"], "mde": mde,
                                       "basis": "paired memory, 40 blocks"}]
    assert "[node1 vs node0]" in verdict["comparisons"][0]["configuration"]
    if passed:
        assert verdict["sentence"] == "gate passed: 1 of 1 run(s) measured, 1 comparison(s) with an MDE within 5%."
    else:
        assert "MDE 8.1%" in verdict["sentence"]


def test_the_phases_say_what_the_gate_checks():
    phases = load_phases()
    assert phases["phase2_numa_locality"].gate.max_mde == 0.05
    assert phases["phase1_framework_validation"].gate.max_mde is None  # the quick start: no comparison to judge
    assert math.isclose(phases["phase1_framework_validation"].gate.max_failure_rate, 0.0)


def test_the_sentence_says_which_studies_this_host_did_not_run(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.01)], 1)
    plan = json.loads((folder / "plan.json").read_text())
    plan["skipped_studies"] = [{"study": "key_gpu_numa_pairs", "role": "gpu_local_and_farthest",
                                "reason": "vm has one NUMA node (node 0): no remote placement exists"}]
    results.write_json_atomic(folder / "plan.json", plan)
    verdict = judge_run_folder(folder, Gate(max_failure_rate=0.0)).to_json()
    assert verdict["passed"]
    assert verdict["sentence"] == ("gate passed: 1 of 1 run(s) measured; not run on this host: key_gpu_numa_pairs "
                                   "(vm has one NUMA node (node 0): no remote placement exists).")
