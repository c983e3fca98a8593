"""Every DAG file imports cleanly; the phases have the agreed shape and Asset edges."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PHASES = [
    "phase1_framework_validation", "phase2_numa_locality", "phase3_scaling",
    "phase4_memory_transfer", "phase5_compilation", "phase6_production",
]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dags) == sorted([*PHASES, "nightly_sweep"])


def test_nightly_is_cron_scheduled_and_compares(dagbag):
    dag = dagbag.dags["nightly_sweep"]
    assert type(dag.timetable).__name__ == "CronTriggerTimetable" or "0 1 * * *" in str(dag.timetable.summary)
    assert dag.get_task("compare_baseline").upstream_task_ids == {"gate", "plan_runs"}
    assert dag.get_task("compare_baseline").trigger_rule == "all_success"


@pytest.mark.parametrize("dag_id", PHASES)
def test_phase_shape(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert set(dag.task_ids) == {"discover_topology", "plan_runs", "measure", "load_duckdb", "report", "gate"}
    assert dag.get_task("measure").upstream_task_ids == {"plan_runs"}
    assert dag.get_task("load_duckdb").upstream_task_ids >= {"measure", "plan_runs"}
    assert dag.get_task("gate").upstream_task_ids >= {"report"}
    for task_id in ("load_duckdb", "report", "gate"):
        assert dag.get_task(task_id).trigger_rule == "all_done"
    assert [o.uri for o in dag.get_task("gate").outlets] == [f"numa-lab://phases/{dag_id}"]
    assert set(dag.params) == {"studies", "experiment", "overrides", "sweeps", "num_samples", "folder"}
    assert "Research question" in dag.doc_md and "Goal" in dag.doc_md
    assert "numa-lab" in dag.tags


@pytest.mark.parametrize(
    ("dag_id", "after"),
    [
        ("phase1_framework_validation", set()),
        ("phase2_numa_locality", {"phase1_framework_validation"}),
        ("phase3_scaling", {"phase1_framework_validation"}),
        ("phase4_memory_transfer", {"phase2_numa_locality"}),
        ("phase5_compilation", {"phase3_scaling"}),
        ("phase6_production", {"phase2_numa_locality", "phase3_scaling", "phase4_memory_transfer", "phase5_compilation"}),
    ],
)
def test_asset_edges(dagbag, dag_id, after):
    dag = dagbag.dags[dag_id]
    if not after:
        assert type(dag.timetable).__name__ == "NullTimetable"
        return
    names = {a.name for a in dag.timetable.asset_condition.iter_assets().values()} if hasattr(
        dag.timetable.asset_condition, "iter_assets") else {a.name for a in dag.timetable.asset_condition.objects}
    assert names == after


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


def test_form_takes_an_override_as_the_grammar_writes_it(dagbag):
    value = ["experiment.vit_configs=[{name: t, patch_size: 8, depth: 1, heads: 2, dim: 32, mlp_dim: 64}]"]
    assert dagbag.dags["phase1_framework_validation"].params.get_param("overrides").resolve(value) == value


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("experiment", "../../etc/passwd", id="experiment-traversal"),
        pytest.param("studies", ["nope"], id="unknown-study"),
        pytest.param("num_samples", 10**12, id="huge-num-samples"),
        pytest.param("folder", "../etc", id="folder-traversal"),
    ],
)
def test_form_refuses_bad_values(dagbag, name, value):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        dagbag.dags["phase2_numa_locality"].params.get_param(name).resolve(value)
