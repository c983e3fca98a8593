"""A DAG run's folders found again from its id (as ``run_folder_name`` names them), and the folders listed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from numa_ops import results
from numa_ops.phase_tasks import run_folder_name
from numa_ops.trigger_request import TriggerRequest
from numa_ops.ui import runs


class DagRun:
    def __init__(self, dag_id: str, run_id: str) -> None:
        self.dag_id, self.run_id, self.run_after = dag_id, run_id, datetime(2026, 11, 28, 6, 0, 0, tzinfo=UTC)


def plan(outputs, folder: str, phase: str) -> None:
    results.write_json_atomic(outputs / folder / "plan.json", {"phase": phase, "params": {}, "created_at": folder})


@pytest.mark.parametrize(("params", "host"), [({}, None), ({"experiment": "tiny"}, None), ({}, "gpu-a")],
                         ids=["phase-name", "experiment-name", "on-a-host"])
def test_the_folder_a_run_planned_is_found_from_its_id(outputs_dir, params, host):
    dag_id, run_id = "phase2_numa_locality", "manual__2026-11-28T06:00:00+00:00"
    folder = run_folder_name(dag_id, TriggerRequest.from_params(params), DagRun(dag_id, run_id), host)
    plan(outputs_dir, folder, dag_id)
    other = run_folder_name(dag_id, TriggerRequest.from_params(params), DagRun(dag_id, "manual__other"), host)
    plan(outputs_dir, other, dag_id)
    assert runs.folders_of_run(dag_id, run_id) == [folder]


def test_a_folder_of_another_phase_with_the_same_digest_is_not_taken(outputs_dir):
    dag_id, run_id = "phase1_framework_validation", "manual__1"
    folder = run_folder_name(dag_id, TriggerRequest(), DagRun(dag_id, run_id), None)
    plan(outputs_dir, folder, "phase3_scaling")
    assert runs.folders_of_run(dag_id, run_id) == []


def test_a_resumed_folder_is_found_by_the_forms_folder(outputs_dir):
    plan(outputs_dir, "night_a", "nightly_sweep")
    plan(outputs_dir, "night_a_gpu-a", "nightly_sweep")
    plan(outputs_dir, "night_ab", "nightly_sweep")
    assert runs.folders_of_run("nightly_sweep", "scheduled__x", resume_folder="night_a") == ["night_a", "night_a_gpu-a"]


def test_folders_are_listed_newest_first_with_summary_and_verdict(outputs_dir):
    plan(outputs_dir, "a_1", "phase1_framework_validation")
    plan(outputs_dir, "b_2", "phase1_framework_validation")
    results.write_json_atomic(outputs_dir / "b_2" / "gate.json", {"passed": False, "summary": "2/4 runs failed"})
    results.write_json_atomic(outputs_dir / "b_2" / "experiment_summary.json", {"planned_runs": 4, "failed_runs": 2})
    (outputs_dir / "c_3").mkdir()  # no plan: not a run folder
    listed = runs.run_folders()
    assert [f.name for f in listed] == ["b_2", "a_1"]
    assert (listed[0].gate_passed, listed[0].gate_summary, listed[0].planned_runs, listed[0].failed_runs) == (
        False, "2/4 runs failed", 4, 2)
    assert (listed[1].gate_passed, listed[1].has_report) == (None, False)
