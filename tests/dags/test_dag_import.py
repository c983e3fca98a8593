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
    # the gate is the one leaf (a failed plan fails it too); it updates the Asset through an alias, only for the phase
    gate = dag.get_task("gate")
    assert {t.task_id for t in dag.leaves} == {"gate"}
    assert [o.name for o in gate.outlets] == [f"{dag_id}_gate"] and type(gate.outlets[0]).__name__ == "AssetAlias"
    assert set(dag.params) == {"studies", "experiment", "overrides", "sweeps", "num_samples", "update_asset", "folder"}
    assert dag.params["update_asset"] is False
    assert "Starts next" in dag.doc_md and "Fails" in dag.doc_md
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
        ("phase6_production",
         {"phase2_numa_locality", "phase3_scaling", "phase4_memory_transfer", "phase5_compilation"}),
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


def test_nightly_fails_when_its_gate_fails(dagbag):
    dag = dagbag.dags["nightly_sweep"]
    assert {t.task_id for t in dag.leaves} == {"compare_baseline"}  # upstream_failed when the gate fails


@pytest.mark.parametrize(
    ("dag_id", "starts"),
    [
        ("phase1_framework_validation", ["phase2_numa_locality", "phase3_scaling"]),
        ("phase3_scaling", ["phase5_compilation", "phase6_production"]),
        ("phase6_production", []),
    ],
)
def test_docs_say_what_starts_what(dagbag, dag_id, starts):
    doc = dagbag.dags[dag_id].doc_md
    line = next(x for x in doc.splitlines() if x.startswith("**Starts next:**"))
    for name in starts:
        assert f"`{name}`" in line
    assert ("nothing starts after this phase" in line) == (not starts)


def _phase1_defaults(dagbag):
    """The trigger form's defaults (built afresh: other tests resolve values into the DagBag's params)."""
    from numa_ops.dag_factory import _params
    from numa_ops.phases import load_phases

    return {k: p.value for k, p in _params(load_phases()["phase1_framework_validation"]).items()}


def _request(params, hosts=None):
    from numa_ops.trigger_request import TriggerRequest

    return TriggerRequest.from_params(params, hosts)


def test_the_phase_as_defined_is_the_phase(dagbag):
    from numa_ops.dag_factory import not_the_phase
    from numa_ops.phases import load_phases

    phase = load_phases()["phase1_framework_validation"]
    assert not_the_phase(phase, _request(_phase1_defaults(dagbag))) == []
    resumed = _request({**_phase1_defaults(dagbag), "folder": "resume_me"})
    assert not_the_phase(phase, resumed) == []  # resuming is the phase
    assert not_the_phase(phase, _request({})) == []  # an Asset-triggered run's conf


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"experiment": "quick_test"}, "ad-hoc experiment quick_test", id="adhoc"),
        pytest.param({"studies": ["quick_test"]}, "studies quick_test of", id="subset"),
        pytest.param({"overrides": ["experiment.test.num_samples=100"]}, "overrides experiment.test.num_samples=100",
                     id="override"),
        pytest.param({"sweeps": ["experiment.test.batch_size=4,8"]}, "sweeps", id="sweep"),
        pytest.param({"num_samples": 100}, "num_samples=100", id="num-samples"),
    ],
)
def test_anything_else_is_not_the_phase(dagbag, change, reason):
    from numa_ops.dag_factory import not_the_phase
    from numa_ops.phases import load_phases

    phase = load_phases()["phase1_framework_validation"]
    reasons = not_the_phase(phase, _request({**_phase1_defaults(dagbag), **change}))
    assert len(reasons) == 1 and reasons[0].startswith(reason)


def test_some_of_the_hosts_is_not_the_phase(dagbag):
    from numa_ops.dag_factory import not_the_phase
    from numa_ops.phases import load_phases

    phase = load_phases()["phase1_framework_validation"]
    every = {**_phase1_defaults(dagbag), "hosts": ["gpu-a", "gpu-b"]}
    hosts = ["gpu-a", "gpu-b"]
    assert not_the_phase(phase, _request(every, hosts), hosts) == []
    assert not_the_phase(phase, _request({**every, "hosts": ["gpu-b"]}, hosts), hosts) == [
        "hosts gpu-b of gpu-a, gpu-b"]


class _Events(dict):
    def __missing__(self, key):
        self[key] = _Added()
        return self[key]


class _Added(list):
    def add(self, asset, extra=None):
        self.append(asset)


@pytest.mark.parametrize(
    ("change", "updated"),
    [
        pytest.param({}, True, id="the-phase"),
        pytest.param({"experiment": "quick_test"}, False, id="adhoc"),
        pytest.param({"experiment": "quick_test", "update_asset": True}, True, id="adhoc-update-asset"),
        pytest.param({"num_samples": 100}, False, id="fewer-samples"),
    ],
)
def test_the_gate_updates_the_asset_only_for_the_phase(dagbag, capsys, change, updated):
    from numa_ops.dag_factory import _update_asset, phase_alias, phase_asset
    from numa_ops.phases import load_phases

    dag_id = "phase1_framework_validation"
    events = _Events()
    _update_asset(dag_id, load_phases()[dag_id], [],
                  {"params": {**_phase1_defaults(dagbag), **change}, "outlet_events": events})
    assert events.get(phase_alias(dag_id), []) == ([phase_asset(dag_id)] if updated else [])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"Asset {dag_id} updated") if updated else "is not updated" in last


class _TI:
    dag_id, run_id = "phase1_framework_validation", "manual__1"

    def __init__(self, failed, refused):
        self.failed, self.refused = failed, refused

    def get_ti_count(self, dag_id, task_ids, run_ids, states):
        assert task_ids == ["plan_runs"] and run_ids == [self.run_id] and "failed" in states
        return self.failed

    def xcom_pull(self, task_ids, key):
        assert key == "refused"
        return [self.refused]


def test_the_gate_fails_when_planning_failed(dagbag, capsys):
    from airflow.sdk.exceptions import AirflowFailException
    from numa_ops.dag_factory import _fail_if_nothing_was_planned

    task = dagbag.dags["phase1_framework_validation"].get_task("gate")
    _fail_if_nothing_was_planned({"ti": _TI(0, None), "task": task})  # planned: the gate runs
    with pytest.raises(AirflowFailException, match=r"nothing was planned \(plan_runs failed: GPU \[7\] not found"):
        _fail_if_nothing_was_planned({"ti": _TI(1, "GPU [7] not found"), "task": task})
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("nothing was planned (plan_runs failed: GPU [7]")
    with pytest.raises(AirflowFailException, match="see the log of plan_runs"):  # crashed without a refusal
        _fail_if_nothing_was_planned({"ti": _TI(1, None), "task": task})
