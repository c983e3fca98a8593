from __future__ import annotations

import json

from numa_ops import results
from numa_ops.gate import check
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
    verdict = check(folder, Gate(max_failure_rate=0.0, max_ci_half_width=0.05))
    assert verdict["passed"] and verdict["problems"] == []
    assert json.loads((folder / "gate.json").read_text())["passed"]


def test_names_failed_missing_and_noisy_runs(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.30), record("f1.r1", success=False)], 3)
    verdict = check(folder, Gate(max_failure_rate=0.5, max_ci_half_width=0.05))
    assert not verdict["passed"]
    assert verdict["failure_rate"] == 2 / 3
    assert "f1.r0: 95% CI half-width 30.0% of samples/s > 5%" in verdict["problems"]
    assert "f1.r1: failed: boom" in verdict["problems"]
    assert "f1.r2: no record (never ran)" in verdict["problems"]


def test_failure_rate_threshold(tmp_path):
    folder = _folder(tmp_path, [_ok("f1.r0", 0.01), record("f1.r1", success=False)], 2)
    assert check(folder, Gate(max_failure_rate=0.5, max_ci_half_width=0.05))["passed"]
    assert not check(folder, Gate(max_failure_rate=0.49, max_ci_half_width=0.05))["passed"]
