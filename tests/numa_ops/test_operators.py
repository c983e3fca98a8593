"""NumaLaneOperator running the real worker (under real numactl where installed)."""

from __future__ import annotations

import json

import pytest
from numa_ops.operators import NumaLaneOperator
from numa_ops.specs import DeviceTurn

from tests.numa_ops.lanes import tiny_lane, with_test


def test_operator_runs_the_lane_and_names_the_instance(configs_dir, outputs_dir):
    folder_path, lane = tiny_lane()
    op = NumaLaneOperator(task_id="measure", lane=DeviceTurn.of_lane(lane).to_json())
    context: dict = {}
    outcome = op.execute(context)
    assert context["lane_name"] == "cpu-cpu0-mem0"
    assert len(outcome["succeeded"]) == 2 and outcome["failed"] == []
    for spec in lane.runs:
        assert json.loads((folder_path / "runs" / f"{spec.run_id}.json").read_text())["success"]


def test_operator_fails_after_trying_every_run(configs_dir, outputs_dir):
    folder_path, lane = tiny_lane()
    lane = with_test(lane, 0, num_samples=10_000_000, timeout_s=1, max_trial_time_s=0.5)
    op = NumaLaneOperator(task_id="measure", lane=DeviceTurn.of_lane(lane).to_json())
    with pytest.raises(RuntimeError, match="1 of 2 runs failed"):
        op.execute({})
    assert json.loads((folder_path / "runs" / f"{lane.runs[1].run_id}.json").read_text())["success"]


def test_on_kill_before_start_is_harmless():
    NumaLaneOperator(task_id="measure", lane={"name": "x", "runs": []}).on_kill()
