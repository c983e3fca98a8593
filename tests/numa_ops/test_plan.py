from __future__ import annotations

import pytest
from numa_ops.config import ConfigError, load_experiment
from numa_ops.plan import PlanError, build_plan, count_runs, device_turns, lane_name, lanes_by_device
from numa_ops.specs import DeviceTurn, Lane, PatternRef
from numa_ops.topology import PlacementError, discover

from tests.numa_ops.fake_sysfs import make_sysfs
from tests.numa_ops.lanes import run_spec


@pytest.fixture
def topo(tmp_path):
    return discover(
        make_sysfs(tmp_path / "s", {0: "0-7", 1: "8-15"}, {"0000:3b:00.0": 0, "0000:af:00.0": 1}), use_nvml=False
    )


def test_lanes_are_gpu_by_node(topo):
    configs = load_experiment("numa_study", ["experiment.hardware.numa_nodes=[0,1]", "experiment.test.repeats=1"])
    lanes = build_plan("f1", configs, topo)
    assert [lane.name for lane in lanes] == ["gpu0-cpu0-mem0", "gpu0-cpu1-mem1", "gpu1-cpu0-mem0", "gpu1-cpu1-mem1"]
    assert all(len(lane.runs) == 5 for lane in lanes)
    placements = {lane.name: lane.runs[0].placement for lane in lanes}
    assert placements == {
        "gpu0-cpu0-mem0": "local",
        "gpu0-cpu1-mem1": "remote",
        "gpu1-cpu0-mem0": "remote",
        "gpu1-cpu1-mem1": "local",
    }


def test_run_ids_deterministic_and_unique(topo):
    configs = load_experiment("quick_test", ["experiment.test.batch_size=4,8"])
    first = build_plan("f1", configs, topo)
    again = build_plan("f1", configs, topo)
    ids = [r.run_id for lane in first for r in lane.runs]
    assert ids == [r.run_id for lane in again for r in lane.runs]
    assert len(ids) == len(set(ids)) == 2 * 2 * 2  # batch sizes x models x GPUs
    other = build_plan("f2", configs, topo)
    assert not set(ids) & {r.run_id for lane in other for r in lane.runs}


def test_placement_errors_before_any_run(topo):
    with pytest.raises(PlacementError, match="GPU"):
        build_plan("f", load_experiment("quick_test", ["experiment.hardware.gpu_ids=[7]"]), topo)
    with pytest.raises(PlacementError, match="NUMA node"):
        build_plan("f", load_experiment("quick_test", ["experiment.hardware.numa_nodes=[5]"]), topo)


def test_plan_over_cap_is_refused(topo, monkeypatch):
    monkeypatch.setenv("NUMA_LAB_MAX_RUNS", "3")
    with pytest.raises(PlanError, match="the plan has 4 runs, over the cap of 3"):
        build_plan("f", load_experiment("quick_test"), topo)


def test_lane_name():
    assert lane_name(None, 0, 0) == "cpu-cpu0-mem0"
    assert lane_name(3, 1, 2) == "gpu3-cpu1-mem2"
    assert lane_name(0, 0, 0, pool_node=1) == "gpu0-cpu0-mem0-pool1"
    assert lane_name(0, 1, 1, repeat=2) == "gpu0-cpu1-mem1-r2"
    assert lane_name(None, 0, 0, 1, 1) == "cpu-cpu0-mem0-pool1-r1"


def test_spread_offers_each_run_once_to_every_gpu(topo):
    configs = load_experiment("quick_test", ["experiment.hardware.spread=true", "experiment.test.batch_size=4,8,16"])
    lanes = build_plan("f", configs, topo)
    assert count_runs(lanes) == 6  # 2 models x 3 batch sizes, each measured once
    assert [len(lane.runs) for lane in lanes] == [6, 6]  # ...by whichever GPU's lane takes it first
    assert [r.run_id for r in lanes[0].runs] == [r.run_id for r in lanes[1].runs]
    assert all(".pool." in r.run_id and r.pool == ("gpu0-cpu0-mem0", "gpu1-cpu0-mem0") for r in lanes[0].runs)
    assert {(r.gpu_id, r.lane) for r in lanes[1].runs} == {(1, "gpu1-cpu0-mem0")}  # each copy placed on its lane
    every = build_plan("f", load_experiment("quick_test", ["experiment.test.batch_size=4,8,16"]), topo)
    assert count_runs(every) == 12  # every run on every GPU
    assert not any(r.pool or r.group for lane in every for r in lane.runs)
    assert not any("pool" in r or "group" in r for lane in every for r in lane.to_json()["runs"])  # nor in plan.json


def test_together_groups_a_patterns_gpus_behind_one_barrier(topo):
    configs = load_experiment(
        "quick_test", ['experiment.hardware.gpu_ids="[0],[1],[0,1]"', "experiment.hardware.together=true"]
    )
    lanes = build_plan("f", configs, topo)
    assert count_runs(lanes) == 8  # 2 models x ([0] + [1] + 2 GPUs of [0,1])
    grouped = [r for lane in lanes for r in lane.runs if r.group]
    assert len(grouped) == 4
    groups = {r.group.id: r.group.runs for r in grouped}
    assert len(groups) == 2 and all(set(runs) == {"gpu0-cpu0-mem0", "gpu1-cpu0-mem0"} for runs in groups.values())
    assert all(r.group.runs[r.lane] == r.run_id for r in grouped)
    assert all(lane.max_workers >= 2 for lane in lanes)  # a pattern's GPUs run at once


def test_spread_and_together_exclude_each_other(topo):
    with pytest.raises(ConfigError, match="spread and together"):
        load_experiment("quick_test", ["experiment.hardware.spread=true", "experiment.hardware.together=true"])


def test_device_turns_are_lanes_without_patterns(topo):
    lanes = build_plan("f", load_experiment("quick_test"), topo)
    assert device_turns(lanes, max_concurrent=2) == [DeviceTurn.of_lane(lane) for lane in lanes]
    assert [turn.name for turn in device_turns(lanes, max_concurrent=2)] == [lane.name for lane in lanes]
    # one lane at a time: nobody shares a lane's CPU node
    assert device_turns(lanes, max_concurrent=1) == [DeviceTurn.of_lane(lane.alone()) for lane in lanes]
    assert lanes[0].runs[0].node_shared_with == ("gpu1-cpu0-mem0",)
    assert all(r.node_shared_with == ()
               for t in device_turns(lanes, max_concurrent=1) for lane in t.lanes for r in lane.runs)


def test_device_turns_are_gpus_with_patterns_and_need_them_all_at_once(topo):
    configs = load_experiment("quick_test", ['experiment.hardware.gpu_ids="[0],[1],[0,1]"', "experiment.max_workers=1"])
    lanes = build_plan("f", configs, topo)
    assert all(lane.max_workers == 2 for lane in lanes)  # raised: the pattern's GPUs run at once
    turns = device_turns(lanes, max_concurrent=2)
    assert [(t.name, t.gpu_id, [lane.name for lane in t.lanes]) for t in turns] == [
        ("gpu0", 0, ["gpu0-cpu0-mem0"]), ("gpu1", 1, ["gpu1-cpu0-mem0"])]
    with pytest.raises(PlanError, match=r"use 2 GPUs \(\[0, 1\]\).*raise the phase's max_lanes to 2"):
        device_turns(lanes, max_concurrent=1)


def _lane(gpu, cpu, *patterns):
    name = lane_name(gpu, cpu, cpu)
    runs = tuple(run_spec(f"{gpu}.{cpu}.{seq}", name, gpu_id=gpu, group=PatternRef(f"p{seq}", {}, seq))
                 for seq in patterns)
    return Lane(name, "f", gpu, cpu, cpu, 2, runs)


def test_lanes_by_device_puts_each_gpus_lanes_in_pattern_order():
    lanes = [_lane(0, 0, 0), _lane(0, 1, 1), _lane(1, 0, 1), _lane(1, 1, 0), _lane(2, 0)]
    order = lanes_by_device(lanes)
    assert list(order) == [0, 1, 2]  # GPUs in patterns first
    assert [lane.name for lane in order[1]] == ["gpu1-cpu1-mem1", "gpu1-cpu0-mem0"]  # pattern 0, then 1


def test_lanes_by_device_refuses_patterns_that_gpus_would_meet_in_opposite_orders():
    # gpu0's first lane holds patterns 0 and 3, its second 1; gpu1 meets 1 before 3
    lanes = [_lane(0, 0, 0, 3), _lane(0, 1, 1), _lane(1, 0, 1), _lane(1, 1, 3)]
    with pytest.raises(PlanError, match="cannot all be met"):
        lanes_by_device(lanes)
