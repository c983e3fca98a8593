from __future__ import annotations

import json

from numa_ops import results
from numa_ops.gate import judge_run_folder
from numa_ops.phases import Gate

from tests.numa_ops.records import record


def _folder(tmp_path, records, planned):
    folder = tmp_path / "f1"
    results.write_json_atomic(folder / "plan.json", {"lanes": [{"runs": [{"run_id": f"f1.r{i}"} for i in range(planned)]}]})
    for rec in records:
        results.write_json_atomic(folder / "runs" / f"{rec['run_id']}.json", rec)
    return folder


def _ok(run_id, width):
    return record(run_id, metrics={"samples_per_s": 10.0, "samples_per_s_ci": {"rel_half_width": width}})


def test_passes_when_complete_and_tight(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.01), _ok("f1.r1", 0.02)], 2)
    verdict = judge_run_folder(folder, Gate(max_failure_rate=0.0, max_ci_half_width=0.05))
    assert verdict["passed"] and verdict["problems"] == []
    assert json.loads((folder / "gate.json").read_text())["passed"]


def test_names_failed_missing_and_noisy_runs(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.30), record("f1.r1", success=False)], 3)
    verdict = judge_run_folder(folder, Gate(max_failure_rate=0.5, max_ci_half_width=0.05))
    assert not verdict["passed"]
    assert verdict["failure_rate"] == 2 / 3
    assert "f1.r0: 95% CI half-width 30.0% of samples/s > 5%" in verdict["problems"]
    assert "f1.r1: failed: boom" in verdict["problems"]
    assert "f1.r2: no record (never ran)" in verdict["problems"]


def test_failure_rate_threshold(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.01), record("f1.r1", success=False)], 2)
    assert judge_run_folder(folder, Gate(max_failure_rate=0.5, max_ci_half_width=0.05))["passed"]
    assert not judge_run_folder(folder, Gate(max_failure_rate=0.49, max_ci_half_width=0.05))["passed"]


def test_a_failing_gate_ends_in_one_sentence_with_what_to_do(tmp_path):
    launch_bound = {"samples_per_s": 5000.0, "trials": 8, "binding_stage": "cpu_issue",
                    "samples_per_s_ci": {"rel_half_width": 0.12, "level": 0.99},
                    "cpu_control": {"median": 200.0, "low": 150.0, "high": 260.0}}
    folder = _folder(tmp_path, [_ok("f1.r0", 0.01), record("f1.r1", metrics=launch_bound, lane="gpu0-cpu0-mem0", model={"name": "small"})], 2)
    verdict = judge_run_folder(folder, Gate(max_failure_rate=0.0, max_ci_half_width=0.05))
    sentence = verdict["sentence"]
    assert not verdict["passed"] and "\n" not in sentence and sentence.startswith("gate FAILED:")
    assert "small on gpu0-cpu0-mem0 measured ±12.0% over 8 trials" in sentence and "±5% limit" in sentence
    assert "launch-bound" in sentence and "-25% to +30%" in sentence
    assert "experiment.test.max_trials" in sentence  # what to do
    assert json.loads((folder / "gate.json").read_text())["sentence"] == sentence


def test_too_few_trials_for_a_95_interval_fail_the_gate(tmp_path):
    short = {"samples_per_s": 10.0, "trials": 3, "samples_per_s_ci": {"rel_half_width": 0.01, "level": 0.75}}
    folder = _folder(tmp_path, [record("f1.r0", metrics=short)], 1)
    verdict = judge_run_folder(folder, Gate(max_failure_rate=0.0, max_ci_half_width=0.05))
    assert not verdict["passed"] and "only 3 trial(s)" in verdict["problems"][0] and "75%" in verdict["problems"][0]
    one = {"samples_per_s": 10.0, "trials": 1, "samples_per_s_ci": {"rel_half_width": None, "level": None}}
    folder = _folder(tmp_path / "one", [record("f1.r0", metrics=one)], 1)
    assert "no interval at all" in judge_run_folder(folder, Gate(max_failure_rate=0.0, max_ci_half_width=0.05))["problems"][0]


def test_failed_runs_say_where_the_reason_is(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.01), record("f1.r1", success=False)], 2)
    sentence = judge_run_folder(folder, Gate(max_failure_rate=0.0, max_ci_half_width=0.05))["sentence"]
    assert "1 of 2 run(s) failed or never ran (r1 on cpu-cpu0-mem0 failed: boom" in sentence
    assert "folder=" in sentence


def test_a_passing_gate_says_so_in_one_sentence(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.01)], 1)
    assert judge_run_folder(folder, Gate(max_failure_rate=0.0, max_ci_half_width=0.05))["sentence"].startswith("gate passed")
