from __future__ import annotations

import json

import pytest
from numa_ops import results
from numa_ops.paths import UnsafePathError

from tests.numa_ops.records import record


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "runs" / "a.json"
    results.write_json_atomic(path, {"x": 1})
    results.write_json_atomic(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_finalize_writes_results_and_summary_and_quarantines_bad_files(tmp_path):
    folder = tmp_path / "f1"
    results.write_json_atomic(folder / "plan.json", {"lanes": [{"runs": [{"run_id": f"f1.{c}"} for c in "abcd"]}]})
    results.write_json_atomic(folder / "runs" / "f1.a.json", record("f1.a"))
    results.write_json_atomic(folder / "runs" / "f1.b.json", record("f1.b", success=False))
    (folder / "runs" / "f1.c.json").write_text('{"run_id": "f1.c", "succ')  # truncated
    summary = results.finalize(folder)
    rows = json.loads((folder / "results.json").read_text())
    assert [r["run_id"] for r in rows] == ["f1.a", "f1.b"]
    assert summary["successful_runs"] == 1 and summary["failed_runs"] == 1
    assert summary["planned_runs"] == 4 and summary["missing_runs"] == 2
    assert summary["failures"] == [{"run_id": "f1.b", "error": "boom"}]
    assert (folder / "quarantine" / "f1.c.json").exists()
    assert "unreadable run file" in (folder / "quarantine" / "f1.c.json.reason.txt").read_text()


@pytest.mark.parametrize("folder", ["../etc", "/abs", "a/b", ".hidden", ""],
                         ids=["dotdot", "absolute", "slash", "dot", "empty"])
def test_run_folder_stays_inside_outputs(tmp_path, folder):
    with pytest.raises(UnsafePathError):
        results.run_folder(folder, base=tmp_path)


def test_successful_ignores_failed_records(tmp_path):
    results.write_json_atomic(tmp_path / "runs" / "x.json", record("x", success=False))
    results.write_json_atomic(tmp_path / "runs" / "y.json", record("y"))
    assert not results.successful(tmp_path, "x")
    assert results.successful(tmp_path, "y")
    assert not results.successful(tmp_path, "z")
