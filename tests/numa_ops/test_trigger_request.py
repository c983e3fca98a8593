"""A DAG run's params parsed once into a TriggerRequest: what it refuses, what it means, what plan.json keeps."""

from __future__ import annotations

import pytest
from numa_ops.phases import load_phases
from numa_ops.run_request import RunRequest
from numa_ops.trigger_params import phase_params
from numa_ops.trigger_request import FIELDS, TriggerRequest, form_fields

PHASE1 = "phase1_framework_validation"


def _form(hosts=None):
    """The trigger form's defaults, as Airflow hands them to a task."""
    return {name: param.value for name, param in phase_params(load_phases()[PHASE1], hosts).items()}


def test_the_forms_fields_are_the_requests():
    assert list(_form()) == form_fields() == list(FIELDS)
    assert list(_form(["gpu-a"])) == form_fields(["gpu-a"]) == [*FIELDS, "hosts"]


@pytest.mark.parametrize("hosts", [None, ["gpu-a", "gpu-b"]], ids=["one-host", "gpu-hosts"])
def test_the_forms_defaults_are_the_phase(configs_dir, hosts):
    request = TriggerRequest.from_params(_form(hosts), hosts)
    phase = load_phases()[PHASE1]
    assert request.chosen_studies(phase) == list(phase.studies)
    assert request.not_the_phase(phase, hosts) == [] and request.all_overrides() == []
    assert request.hosts == (tuple(hosts) if hosts else None)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"num_sample": 5}, "unknown field(s) 'num_sample' in the DAG run's conf", id="unknown"),
        pytest.param({"hosts": ["gpu-a"]}, "unknown field(s) 'hosts'", id="hosts-without-gpu-hosts"),
        pytest.param({"studies": "quick_test"}, "field 'studies' must be a list of strings", id="studies-text"),
        pytest.param({"sweeps": [1, 2]}, "field 'sweeps' must be a list of strings", id="sweeps-numbers"),
        pytest.param({"num_samples": True}, "field 'num_samples' must be a whole number", id="samples-bool"),
        pytest.param({"num_samples": 2.5}, "field 'num_samples' must be a whole number", id="samples-float"),
        pytest.param({"experiment": ["tiny"]}, "field 'experiment' must be a string or null", id="experiment-list"),
        pytest.param({"update_asset": "yes"}, "field 'update_asset' must be true or false", id="update-text"),
    ],
)
def test_bad_params_are_refused_with_one_sentence(params, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        TriggerRequest.from_params(params)


def test_hosts_left_out_is_not_unknown():
    assert TriggerRequest.from_params({"hosts": None}).hosts is None


@pytest.mark.parametrize(
    ("params", "refused"),
    [
        pytest.param({"studies": []}, True, id="no-study"),
        pytest.param({"studies": [], "experiment": "tiny"}, False, id="experiment"),
        pytest.param({}, False, id="not-given-is-the-phase"),
    ],
)
def test_a_request_must_choose_something(params, refused):
    request = TriggerRequest.from_params(params)
    if refused:
        with pytest.raises(ValueError, match="no study chosen"):
            request.check_chosen()
    else:
        request.check_chosen()


@pytest.mark.parametrize(
    ("form", "overrides"),
    [
        pytest.param({}, [], id="none"),
        pytest.param({"overrides": ["experiment.test.batch_size=2"], "sweeps": ["experiment.test.num_samples=8,16"]},
                     ["experiment.test.batch_size=2", "experiment.test.num_samples=8,16"], id="overrides-then-sweeps"),
        pytest.param({"num_samples": 12}, ["experiment.test.num_samples=12"], id="num-samples"),
    ],
)
def test_the_requests_overrides(form, overrides):
    assert TriggerRequest.from_params({**_form(), **form}).all_overrides() == overrides


@pytest.mark.parametrize("hosts", [None, ["gpu-a"]], ids=["one-host", "gpu-hosts"])
def test_plan_json_keeps_the_forms_keys_and_reads_back(hosts):
    params = {**_form(hosts), "sweeps": ["experiment.test.batch_size=4,8"], "num_samples": 300, "folder": "f"}
    kept = TriggerRequest.from_params(params, hosts).to_json()
    assert kept == params  # the same keys and values the form sent
    assert TriggerRequest.from_params(kept, hosts) == TriggerRequest.from_params(params, hosts)
    assert RunRequest.from_plan({"phase": PHASE1, "params": kept}).overrides == ("experiment.test.batch_size=4,8",)
