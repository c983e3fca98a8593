"""The typed specs and their one JSON form (plan.json, the lane task's XCom, the worker's runs file)."""

from __future__ import annotations

import json

import pytest
from numa_ops.specs import DeviceTurn, Lane, PatternRef, RunSpec, distinct_runs, lanes_from_plan, runs_from_json

from tests.numa_ops.lanes import TINY_TEST, run_spec

SHARED = run_spec("f.s.pool.tiny.1", "gpu0-cpu0-mem0", gpu_id=0, pool=("gpu0-cpu0-mem0", "gpu1-cpu0-mem0"))
PATTERN = run_spec("f.s.gpu0-cpu0-mem0.tiny.2", "gpu0-cpu0-mem0", gpu_id=0, exclusive=True, barrier_timeout_s=30,
                   group=PatternRef("s.p0.tiny.n0.gpus0-1", {"gpu0-cpu0-mem0": "a", "gpu1-cpu0-mem0": "b"}, seq=3))
POOLED = run_spec("f.s.gpu0-cpu0-mem0-pool1.tiny.3", "gpu0-cpu0-mem0-pool1", gpu_id=0, placement_mode="pool",
                  pool_node=1, repeat=1, node_shared_with=("gpu1-cpu0-mem0",))


@pytest.mark.parametrize("spec", [run_spec(), SHARED, PATTERN, POOLED], ids=["plain", "shared", "pattern", "pool"])
def test_a_run_spec_survives_its_json_form(spec):
    data = json.loads(json.dumps(spec.to_json()))  # as a file or XCom carries it
    assert RunSpec.from_json(data) == spec
    assert data["test"] == TINY_TEST.model_dump() and data["hardware"] == {"share_gpu": False}


def test_optional_keys_appear_only_where_set():
    assert not {"pool", "group", "exclusive", "barrier_timeout_s"} & set(run_spec().to_json())
    assert SHARED.to_json()["pool"] == ["gpu0-cpu0-mem0", "gpu1-cpu0-mem0"]
    assert PATTERN.to_json()["group"] == {"id": "s.p0.tiny.n0.gpus0-1", "seq": 3,
                                          "runs": {"gpu0-cpu0-mem0": "a", "gpu1-cpu0-mem0": "b"}}
    assert (PATTERN.to_json()["exclusive"], PATTERN.to_json()["barrier_timeout_s"]) == (True, 30)


def test_a_spec_of_an_older_plan_gets_the_later_keys_defaults():
    old = {k: v for k, v in run_spec().to_json().items()
           if k not in ("study", "sweep_point", "repeat", "placement_mode", "pool_node", "node_shared_with")}
    spec = RunSpec.from_json(old)
    assert (spec.study, spec.sweep_point, spec.repeat, spec.placement_mode, spec.node_shared_with) == (
        None, 0, 0, "process", ())
    assert spec.pool_node is None and spec.host_pool_node == spec.mem_node


def test_a_runs_file_with_settings_the_config_refuses_is_refused():
    data = run_spec().to_json()
    data["test"] = {**data["test"], "timeout_s": 2, "max_trial_time_s": 30}  # every slow run would time out
    with pytest.raises(ValueError, match="max_trial_time_s"):
        runs_from_json([data])


def _lane(name: str, *runs: RunSpec) -> Lane:
    return Lane(name, "f", 0, 0, 0, 1, runs)


def test_a_turn_and_its_lanes_survive_their_json_form():
    turn = DeviceTurn("gpu0", "f", 0, (_lane("gpu0-cpu0-mem0", SHARED, PATTERN), _lane("gpu0-cpu0-mem0-pool1", POOLED)),
                      host="h1", queue="h1")
    data = json.loads(json.dumps(turn.to_json()))
    assert DeviceTurn.from_json(data) == turn and turn.planned == 3
    assert lanes_from_plan({"lanes": data["lanes"]}) == list(turn.lanes)
    with_host_on_lanes = {**data, "lanes": [{**lane, "host": "h1", "queue": "h1"} for lane in data["lanes"]]}
    assert DeviceTurn.from_json(with_host_on_lanes) == turn  # as plan_runs names the host on each lane too


def test_a_single_lane_is_a_turn_of_one_named_for_it():
    lane = _lane("gpu0-cpu0-mem0", POOLED)
    turn = DeviceTurn.of_lane(lane)
    assert (turn.name, turn.gpu_id, turn.lanes) == ("gpu0-cpu0-mem0", 0, (lane,))
    assert turn.alone().lanes[0].runs[0].node_shared_with == () and POOLED.node_shared_with


def test_distinct_runs_counts_a_shared_run_once():
    other = run_spec("f.s.pool.tiny.1", "gpu1-cpu0-mem0", gpu_id=1, pool=SHARED.pool)  # the same run, gpu1's copy
    runs = distinct_runs([_lane("gpu0-cpu0-mem0", SHARED, PATTERN), _lane("gpu1-cpu0-mem0", other)])
    assert [r.run_id for r in runs] == [SHARED.run_id, PATTERN.run_id] and runs[0] is SHARED
