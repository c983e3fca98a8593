"""The trigger form's fields: the same form for every phase, with a hosts field only where GPU hosts are configured."""

from __future__ import annotations

import pytest
from numa_ops.phases import load_phases
from numa_ops.trigger_form import FORMAT
from numa_ops.trigger_params import phase_params

FIELDS = {"studies", "experiment", "overrides", "sweeps", "num_samples", "update_asset", "folder"}


@pytest.mark.parametrize(("hosts", "fields"), [([], FIELDS), (["gpu-a", "gpu-b"], FIELDS | {"hosts"})],
                         ids=["one-host", "gpu-hosts"])
def test_the_forms_fields(configs_dir, hosts, fields):
    phase = load_phases()["phase2_numa_locality"]
    params = phase_params(phase, hosts)
    assert set(params) == fields
    assert (params["studies"].value == list(phase.studies)
            and params["studies"].schema["items"]["enum"] == list(phase.studies))
    assert None in params["experiment"].schema["enum"] and "tiny" in params["experiment"].schema["enum"]
    for name in ("overrides", "sweeps"):  # each item checked with the planner's grammar where the format is registered
        assert params[name].schema["items"]["format"] == FORMAT
    assert ("<folder>_<host>" in params["folder"].description) == bool(hosts)
    if hosts:
        assert params["hosts"].value == hosts and params["hosts"].schema["items"]["enum"] == hosts


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("overrides", ["experiment.test.num_samples=5 && rm -rf ~"], id="shell"),
        pytest.param("sweeps", ["test.batch_size=4,8"], id="no-prefix"),
        pytest.param("folder", ".hidden", id="hidden-folder"),
        pytest.param("hosts", ["gpu-c"], id="unknown-host"),
    ],
)
def test_the_form_refuses(configs_dir, name, value):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        phase_params(load_phases()["phase1_framework_validation"], ["gpu-a"])[name].resolve(value)
