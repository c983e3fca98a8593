"""The trigger form refuses, with the planner's own message, what the planner refuses without the host."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def registered():
    """The format registered, as the Airflow plugin does in the API server; unregistered afterwards."""
    from jsonschema import FormatChecker
    from numa_ops.trigger_form import FORMAT, register

    register()
    yield
    FormatChecker.checkers.pop(FORMAT, None)


@pytest.fixture(scope="module")
def phase2():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_import import REPO

    return DagBag(dag_folder=str(REPO / "dags" / "phase2_numa_locality.py")).dags["phase2_numa_locality"]


def _validate(dag, conf):
    """What Airflow does with a DAG run's conf before it creates the run (the API server does the same)."""
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    params = serialized.params.deep_merge(conf)
    return params.validate()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("overrides", "experiment.test.bogus=1", "experiment.test.bogus: unknown key", id="unknown-key"),
        pytest.param("overrides", "experiment.test.batch_size=0", "experiment.test.batch_size: Input should be greater",
                     id="out-of-range"),
        pytest.param("overrides", "test.batch_size=4", "overrides start with 'experiment.'", id="no-prefix"),
        pytest.param("overrides", "experiment.test.batch_size=[1,", "experiment.test.batch_size", id="malformed"),
        pytest.param("overrides", "experiment=no_such_experiment", "no_such_experiment", id="unknown-experiment"),
        pytest.param("sweeps", "experiment.test.batch_size=4,0", "experiment.test.batch_size", id="sweep-out-of-range"),
    ],
)
def test_the_form_refuses_what_the_planner_refuses(phase2, field, value, message):
    from airflow.exceptions import ParamValidationError
    from airflow.sdk.definitions.param import ParamValidationError as SdkParamValidationError

    with pytest.raises((ParamValidationError, SdkParamValidationError), match=f"Invalid input for param {field}") as err:
        _validate(phase2, {field: [value]})
    assert message in str(err.value)


@pytest.mark.parametrize(
    "value",
    [
        "experiment.hardware.gpu_ids=[0,3]",  # host-dependent: plan_runs decides
        "experiment.test.batch_size=4,8,16,32",
        "experiment.vit_configs=[{name: t, patch_size: 8, depth: 1, heads: 2, dim: 32, mlp_dim: 64}]",
        "experiment=scaling_study",
    ],
)
def test_the_form_takes_what_the_planner_takes(phase2, value):
    assert _validate(phase2, {"overrides": [value]})["overrides"] == [value]


def test_the_check_gives_the_planners_message():
    from jsonschema import ValidationError
    from numa_ops.trigger_form import check_override

    with pytest.raises(ValidationError, match="experiment.test.bogus: unknown key"):
        check_override("experiment.test.bogus=1")
    assert check_override("experiment.test.num_samples=5")


def test_the_plugin_registers_the_check_in_the_api_server_alone():
    import numa_lab_trigger_form as plugin

    assert plugin.in_api_server(["/venv/bin/airflow", "api-server", "--port", "8080"])
    for argv in (["airflow", "dags", "test", "phase1_framework_validation"], ["airflow", "scheduler"], ["pytest"]):
        assert not plugin.in_api_server(argv)


@pytest.mark.parametrize(
    "override",
    [
        pytest.param("experiment.test.max_trial_time_s=600", id="below-timeout-is-judged-with-the-other-overrides"),
        pytest.param("experiment.test.timeout_s=900", id="in-range"),
    ],
)
def test_a_check_across_settings_is_left_to_the_planner(configs_dir, override):
    # alone, on the form's base experiment, max_trial_time_s=600 is above timeout_s=300; with the run's own
    # experiment and its other overrides (timeout_s=900) it is fine: plan_runs judges the whole
    from numa_ops.trigger_form import check_override

    assert check_override(override) is True
