"""Paired placements in the plan: one lane per GPU, every arm inside its runs, refusals before anything runs."""

from __future__ import annotations

import pytest
from numa_ops.config import ConfigError, load_experiment
from numa_ops.launch import BindingRefused, worker_command
from numa_ops.plan import build_plan
from numa_ops.specs import Lane, RunSpec
from numa_ops.topology import PlacementError, discover

from tests.numa_ops.fake_sysfs import make_sysfs

PAIRED = ["experiment.hardware.placement=paired", "experiment.test.repeats=1"]


@pytest.fixture
def two_nodes(tmp_path):
    return discover(
        make_sysfs(tmp_path / "s", {0: "0-7", 1: "8-15"}, {"0000:3b:00.0": 0, "0000:af:00.0": 1}), use_nvml=False
    )


@pytest.fixture
def one_node(tmp_path):
    return discover(make_sysfs(tmp_path / "s1", {0: "0-7"}, {"0000:3b:00.0": 0}), use_nvml=False)


def test_memory_arms_local_then_remote(two_nodes):
    lanes = build_plan("f", load_experiment("numa_study", PAIRED), two_nodes)
    assert [lane.name for lane in lanes] == ["gpu0-cpu0-mem0-paired-memory", "gpu1-cpu1-mem1-paired-memory"]
    run = lanes[0].runs[0]
    assert run.placement_mode == "paired" and run.paired == "memory"
    assert [(a.node, a.placement) for a in run.arms] == [(0, "local"), (1, "remote")]
    assert (run.cpu_node, run.mem_node, run.placement) == (0, 0, "remote")
    gpu1 = lanes[1].runs[0]
    assert [(a.node, a.placement) for a in gpu1.arms] == [(1, "local"), (0, "remote")]
    assert lanes[0].thread_nodes == ()


def test_thread_arms_bind_both_nodes(two_nodes):
    lanes = build_plan("f", load_experiment("numa_study", [*PAIRED, "experiment.hardware.paired=thread",
                                                           "experiment.hardware.gpu_ids=[0]"]), two_nodes)
    (lane,) = lanes
    assert lane.name == "gpu0-cpu0-mem0-paired-thread" and lane.thread_nodes == (0, 1)
    launch = worker_command(lane_file := __import__("pathlib").Path("runs.json"), lane_file.parent, 0, lane.cpu_node,
                            lane.mem_node, paired="thread", thread_nodes=lane.thread_nodes)
    if launch.argv[0].endswith("numactl"):
        assert launch.argv[1:3] == ["--cpunodebind=0,1", "--membind=0"]


def test_aa_arms_on_one_node(one_node):
    overrides = [*PAIRED, "experiment.hardware.paired_arms=[0,0]"]
    (lane,) = build_plan("f", load_experiment("quick_test", overrides), one_node)
    run = lane.runs[0]
    assert [(a.node, a.pinned) for a in run.arms] == [(0, True), (0, True)]
    assert {r.run_id for r in lane.runs} == {r.run_id for r in build_plan("f", load_experiment("quick_test", overrides),
                                                                           one_node)[0].runs}


def test_pinned_against_pageable_arms(one_node):
    overrides = [*PAIRED, "experiment.hardware.paired_arms=[{node: 0},{node: 0, pinned: false}]"]
    run = build_plan("f", load_experiment("quick_test", overrides), one_node)[0].runs[0]
    assert [a.name for a in run.arms] == ["node0", "node0-pageable"]


def test_one_node_without_arms_is_refused_with_the_aa_hint(one_node):
    with pytest.raises(PlacementError, match=r"no remote arm to compare with.*paired_arms=\[0,0\]"):
        build_plan("f", load_experiment("quick_test", PAIRED), one_node)


def test_an_arm_on_a_missing_node_is_refused(two_nodes):
    with pytest.raises(PlacementError, match=r"NUMA node \[2\] not found"):
        build_plan("f", load_experiment("quick_test", [*PAIRED, "experiment.hardware.paired_arms=[0,2]"]), two_nodes)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["experiment.hardware.paired_arms=[0,1]"], "paired_arms is for placement=paired"),
        ([*PAIRED, "experiment.hardware.paired_arms=[0]"], "at least 2"),
        ([*PAIRED, "experiment.hardware.spread=true"], "excludes spread and together"),
        ([*PAIRED, "experiment.test.paired_max_s=900", "experiment.test.timeout_s=600"],
         "paired_max_s=900.0 must be below"),
    ],
    ids=["arms-without-paired", "one-arm", "paired-with-spread", "cap-over-timeout"],
)
def test_bad_paired_configs_say_why(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment("quick_test", overrides)


def test_paired_specs_survive_json(two_nodes):
    lanes = build_plan("f", load_experiment("numa_study", [*PAIRED, "experiment.hardware.paired=thread"]), two_nodes)
    for lane in lanes:
        assert Lane.from_json(lane.to_json()) == lane
        for run in lane.runs:
            assert RunSpec.from_json(run.to_json()) == run


def test_paired_lanes_need_numactl(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "off")
    with pytest.raises(BindingRefused, match="placement=paired: numactl not found"):
        worker_command(tmp_path / "r.json", tmp_path, 0, 0, 0, paired="memory")


def test_a_paired_run_is_estimated_at_its_time_cap(two_nodes):
    from numa_ops.estimate import estimate_plan

    cfg = load_experiment("quick_test", [*PAIRED, "experiment.test.paired_max_s=90", "experiment.hardware.gpu_ids=[0]",
                                        "experiment.hardware.numa_nodes=[0,1]"])
    lanes = build_plan("f", cfg, two_nodes)
    est = estimate_plan(lanes, max_lanes=1)
    assert all(90 <= s < 90 + 60 for s in est.run_s.values())  # the cap, set-up and warm-ups


def test_process_arms_bind_the_worker_to_the_first_arm(two_nodes):
    overrides = [*PAIRED, "experiment.hardware.paired=process", "experiment.hardware.paired_arms=[1,0]",
                 "experiment.hardware.gpu_ids=[0]"]
    (lane,) = build_plan("f", load_experiment("quick_test", overrides), two_nodes)
    assert lane.name == "gpu0-cpu1-mem1-paired-process" and lane.thread_nodes == ()
    run = lane.runs[0]
    assert (run.cpu_node, run.mem_node) == (1, 1)  # the worker is arm 0's process; a partner takes node 0
    assert [(a.node, a.placement) for a in run.arms] == [(1, "remote"), (0, "local")]
