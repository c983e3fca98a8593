"""The trigger form refuses, with the planner's own message, what the planner refuses without the host."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def registered():
    """The format registered, as the Airflow plugin does in the API server; unregistered afterwards."""
    from jsonschema import FormatChecker
    from numa_ops.trigger_form import COUNT_FORMAT, FOLDER_FORMAT, FORMAT, STUDIES_FORMAT, register

    register()
    yield
    for name in [n for n in FormatChecker.checkers
                 if n in (FORMAT, COUNT_FORMAT) or n.startswith((FOLDER_FORMAT, STUDIES_FORMAT))]:
        FormatChecker.checkers.pop(name)


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

    with pytest.raises((ParamValidationError, SdkParamValidationError),
                       match=f"Invalid input for param {field}") as err:
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


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        pytest.param("report", "outputs/report is numa-lab's own (the all-runs report)", id="all-runs-report"),
        pytest.param("numa_lab.duckdb", "outputs/numa_lab.duckdb is numa-lab's own", id="database"),
        pytest.param("latest.json", "outputs/latest.json is numa-lab's own", id="latest"),
        pytest.param("notes", "outputs/notes exists and is not a run folder", id="other-folder"),
        pytest.param("p1", "outputs/p1 is a run folder of phase1_framework_validation, not of phase2_numa_locality",
                     id="other-phases-folder"),
        pytest.param("../up", "is not allowed", id="traversal"),
    ],
)
def test_the_form_refuses_a_folder_that_is_not_the_phases_nor_free(phase2, outputs_dir, folder, message):
    from airflow.exceptions import ParamValidationError
    from airflow.sdk.definitions.param import ParamValidationError as SdkParamValidationError
    from numa_ops import results

    (outputs_dir / "notes").mkdir()
    results.write_json_atomic(outputs_dir / "p1" / "plan.json", {"phase": "phase1_framework_validation"})
    with pytest.raises((ParamValidationError, SdkParamValidationError), match="Invalid input for param folder") as err:
        _validate(phase2, {"folder": folder})
    assert message in str(err.value)


def test_the_form_takes_the_phases_own_folder_or_a_new_name(phase2, outputs_dir):
    from numa_ops import results

    results.write_json_atomic(outputs_dir / "p2" / "plan.json", {"phase": "phase2_numa_locality"})
    assert _validate(phase2, {"folder": "p2"})["folder"] == "p2"
    assert _validate(phase2, {"folder": "a_new_name"})["folder"] == "a_new_name"


@pytest.mark.parametrize("value", [-5, 0, 100_000_000_000, 2.5, "abc"],
                         ids=["negative", "zero", "too-many", "fraction", "text"])
def test_num_samples_out_of_range_is_refused_not_clamped(phase2, value):
    from airflow.exceptions import ParamValidationError
    from airflow.sdk.definitions.param import ParamValidationError as SdkParamValidationError

    with pytest.raises((ParamValidationError, SdkParamValidationError),
                       match="Invalid input for param num_samples") as err:
        _validate(phase2, {"num_samples": value})
    if not isinstance(value, str):  # a number: the sentence alone, not the schema
        assert str(err.value).endswith(f"num_samples must be a whole number from 1 to 10,000,000 (got {value}); "
                                       "it is refused, not rounded or clamped")
    schema = phase2.params.get_param("num_samples").schema
    assert "minimum" not in schema and "maximum" not in schema  # the browser's number field would clamp to them


def test_an_unknown_study_is_named_with_the_phases_studies(phase2):
    from airflow.exceptions import ParamValidationError
    from airflow.sdk.definitions.param import ParamValidationError as SdkParamValidationError

    with pytest.raises((ParamValidationError, SdkParamValidationError)) as err:
        _validate(phase2, {"studies": ["numa_study", "numa_stdy"]})
    assert str(err.value).startswith("Invalid input for param studies: unknown study 'numa_stdy'; this phase's "
                                     "studies are: ")
    assert "Failed validating" not in str(err.value)
