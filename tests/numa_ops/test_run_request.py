"""What a run folder was asked for, from its plan.json: the form's request, a shell run's, or nothing."""

from __future__ import annotations

import pytest
from numa_ops import results
from numa_ops.run_request import RunRequest


@pytest.mark.parametrize(
    ("plan", "sentence"),
    [
        pytest.param({"phase": "phase1_framework_validation", "dag_run": "manual__1",
                      "params": {"overrides": ["experiment.test.batch_size=8"],
                                 "sweeps": ["experiment.test.dtype=a,b"]},
                      "studies": {"a": [{"test": {"num_samples": 500}}], "b": [{"test": {"num_samples": 16}}]}},
                     "phase phase1_framework_validation, DAG run manual__1, num_samples 16, 500, overrides: "
                     "experiment.test.batch_size=8 experiment.test.dtype=a,b", id="form"),
        pytest.param({"experiment": "tiny", "overrides": ["experiment.test.num_samples=2000000"],
                      "studies": {"main": [{"test": {"num_samples": 2_000_000}}]}},
                     "run from the shell (no phase), num_samples 2,000,000, "
                     "overrides: experiment.test.num_samples=2000000",
                     id="shell"),
        pytest.param({"phase": 3, "params": "x", "studies": ["x"]}, "run from the shell (no phase), num_samples -, "
                     "overrides: none", id="malformed"),
    ],
)
def test_the_request_of_a_plan(plan, sentence):
    assert RunRequest.from_plan(plan).sentence() == sentence


def test_a_folder_without_a_plan_has_an_empty_request(tmp_path):
    assert RunRequest.of_folder(tmp_path) == RunRequest()
    results.write_json_atomic(tmp_path / "plan.json", {"phase": "p", "dag_run": "r"})
    assert RunRequest.of_folder(tmp_path).dag_run == "r"
