"""Every DAG file imports cleanly and Phase 1 has the agreed shape."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "phase1_framework_validation" in dagbag.dags


def test_phase1_shape(dagbag):
    dag = dagbag.dags["phase1_framework_validation"]
    assert set(dag.task_ids) == {"discover_topology", "plan_runs", "measure", "load_duckdb", "report"}
    assert dag.get_task("plan_runs").upstream_task_ids == {"discover_topology"}
    assert dag.get_task("measure").upstream_task_ids == {"plan_runs"}
    assert dag.get_task("load_duckdb").upstream_task_ids >= {"measure", "plan_runs"}
    assert dag.get_task("report").upstream_task_ids >= {"load_duckdb"}
    assert dag.get_task("load_duckdb").trigger_rule == "all_done"
    assert dag.params["experiment"] == "quick_test"
    assert dag.params["overrides"] == []
    assert "Research question" in dag.doc_md


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(["experiment.hardware.gpu_ids=[0];rm -rf ~"], id="shell"),
        pytest.param(["rm -rf /"], id="not-an-override"),
        pytest.param("experiment.test.num_samples=5", id="not-a-list"),
    ],
)
def test_form_refuses_hostile_overrides(dagbag, value):
    from airflow.sdk.definitions.param import ParamValidationError

    dag = dagbag.dags["phase1_framework_validation"]
    with pytest.raises(ParamValidationError):
        dag.params.get_param("overrides").resolve(value)


def test_form_refuses_unknown_experiment(dagbag):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        dagbag.dags["phase1_framework_validation"].params.get_param("experiment").resolve("../../etc/passwd")
