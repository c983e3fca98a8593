"""Repeats (separate worker processes per configuration, placements interleaved ABBA), the pool placement
(only the host pool on the placement's node), and which lanes share a CPU node, planned on a simulated
two-socket host (GPU 0 on node 0, GPU 1 on node 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from numa_ops import results
from numa_ops.config import load_experiment
from numa_ops.launch import worker_command
from numa_ops.plan import PlanError, build_plan, count_runs, device_turns, lanes_by_device
from numa_ops.specs import RunSpec
from numa_ops.topology import PlacementError, discover
from numa_ops.worker.pool import HostPool

from tests.numa_ops.fake_sysfs import RecordingMbind, make_sysfs, two_node_host

BOTH_NODES = ["experiment.hardware.numa_nodes=[0,1]"]


@pytest.fixture
def topo(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "/usr/bin/numactl")
    return discover(two_node_host(tmp_path / "2s"), use_nvml=False)


def plan(topo, *overrides, experiment="quick_test"):
    return build_plan("f", load_experiment(experiment, [*BOTH_NODES, *overrides]), topo)


def ids(lanes):
    return {r.run_id for lane in lanes for r in lane.runs}


# -- repeats --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("repeats", [1, 2, 3], ids=lambda r: f"repeats{r}")
def test_each_repeat_is_a_lane_of_its_own_and_repeat_0_keeps_its_ids(topo, repeats):
    once = plan(topo)
    lanes = plan(topo, f"experiment.test.repeats={repeats}")
    base = [lane.name for lane in once]
    assert sorted(lane.name for lane in lanes) == sorted(
        name + (f"-r{r}" if r else "") for name in base for r in range(repeats))
    assert count_runs(lanes) == repeats * count_runs(once)
    first = [lane for lane in lanes if lane.repeat == 0]
    assert [lane.name for lane in first] == base and ids(first) == ids(once)  # existing folders resume
    for lane in lanes:
        assert {r.repeat for r in lane.runs} == {lane.repeat}
        assert all(r.lane == lane.name and f".{lane.name}." in r.run_id for r in lane.runs)
    assert len(ids(lanes)) == count_runs(lanes)  # every repeat a run of its own


@pytest.mark.parametrize("repeats", [2, 3, 4], ids=lambda r: f"repeats{r}")
def test_each_gpu_takes_its_placements_abba(topo, repeats):
    lanes = plan(topo, f"experiment.test.repeats={repeats}")
    order = lanes_by_device(lanes)
    for gpu, local, remote in ((0, 0, 1), (1, 1, 0)):
        expected = []
        for r in range(repeats):
            pair = [f"gpu{gpu}-cpu{local}-mem{local}", f"gpu{gpu}-cpu{remote}-mem{remote}"]
            expected += [name + (f"-r{r}" if r else "") for name in (pair[::-1] if r % 2 else pair)]
        assert [lane.name for lane in order[gpu]] == expected
        placements = [lane.runs[0].placement for lane in order[gpu]]
        assert placements == (["local", "remote", "remote", "local"] * repeats)[: 2 * repeats]
    by_name = {lane.name: lane for lane in lanes}  # an odd repeat is the mirror: its runs backwards too
    models = [r.model.name for r in by_name["gpu0-cpu0-mem0"].runs]
    assert [r.model.name for r in by_name["gpu0-cpu0-mem0-r1"].runs] == models[::-1]


@pytest.mark.parametrize(
    ("overrides", "units"),
    [
        pytest.param(["experiment.test.repeats=3"], ["gpu0", "gpu1"], id="repeats"),
        pytest.param([], ["gpu0", "gpu1"], id="two-placements-a-gpu"),
        pytest.param(["experiment.hardware.numa_nodes=local", "experiment.test.repeats=2"], ["gpu0", "gpu1"],
                     id="local-repeats"),
        pytest.param(["experiment.hardware.numa_nodes=local"], ["gpu0-cpu0-mem0", "gpu1-cpu1-mem1"],
                     id="one-lane-a-gpu"),
    ],
)
def test_a_gpu_with_several_lanes_is_one_task_that_runs_them_in_plan_order(topo, overrides, units):
    lanes = plan(topo, *overrides)
    turns = device_turns(lanes, max_concurrent=4)
    assert [turn.name for turn in turns] == units
    order = lanes_by_device(lanes)
    for turn in turns:
        assert list(turn.lanes) == order[turn.gpu_id]


# -- repeats with spread and with multi-GPU patterns ---------------------------------------------------------
def test_spread_with_repeats_offers_each_repeat_once_to_every_gpu_in_a_process_of_its_own(topo):
    once = plan(topo, "experiment.hardware.spread=true", "experiment.hardware.numa_nodes=[0]")
    lanes = plan(topo, "experiment.hardware.spread=true", "experiment.hardware.numa_nodes=[0]",
                 "experiment.test.repeats=2")
    assert count_runs(once) == 2 and count_runs(lanes) == 4  # 2 models, each measured once per repeat
    assert sorted(lane.name for lane in lanes) == ["gpu0-cpu0-mem0", "gpu0-cpu0-mem0-r1", "gpu1-cpu0-mem0",
                                                   "gpu1-cpu0-mem0-r1"]
    for r in (0, 1):
        offered = [ids([lane]) for lane in lanes if lane.repeat == r]
        assert offered[0] == offered[1]  # the same pooled runs on each GPU's lane of that repeat
        assert all(all(run_id.endswith(".r1") == bool(r) for run_id in o) for o in offered)
    assert ids(lane for lane in lanes if lane.repeat == 0) == ids(once)
    assert not ids([lane for lane in lanes if lane.repeat == 0]) & ids([lane for lane in lanes if lane.repeat == 1])
    turns = device_turns(lanes, max_concurrent=2)  # each GPU: repeat 0's lane, then repeat 1's
    assert [[lane.name for lane in turn.lanes] for turn in turns] == [
        ["gpu0-cpu0-mem0", "gpu0-cpu0-mem0-r1"], ["gpu1-cpu0-mem0", "gpu1-cpu0-mem0-r1"]]


def test_patterns_with_repeats_meet_in_one_order_and_mirror_on_odd_repeats(topo):
    lanes = plan(topo, "experiment.hardware.gpu_ids=[0,1]", "experiment.hardware.together=true",
                 "experiment.hardware.numa_nodes=local,remote", "experiment.test.repeats=3")
    order = lanes_by_device(lanes)  # no PlanError: every GPU meets the patterns in one order

    def met(gpu, repeat):
        lanes_r = [lane for lane in order[gpu] if lane.repeat == repeat]
        return list(dict.fromkeys(r.group.id.removesuffix(f".r{repeat}") for lane in lanes_r for r in lane.runs))

    for gpu in (0, 1):
        assert met(gpu, 1) == met(gpu, 0)[::-1] and met(gpu, 2) == met(gpu, 0)
    assert met(0, 0) == met(1, 0) and len(met(0, 0)) == 4  # 2 placements x 2 models
    groups = {r.group.id for lane in lanes for r in lane.runs}
    assert len(groups) == 3 * 4 and sum(g.endswith(".r1") for g in groups) == 4
    assert [turn.name for turn in device_turns(lanes, max_concurrent=2)] == ["gpu0", "gpu1"]
    with pytest.raises(PlanError, match="raise the phase's max_lanes to 2"):
        device_turns(lanes, max_concurrent=1)


# -- process and pool placement ---------------------------------------------------------------------------------
PROCESS = {  # lane: (numactl binding, pool node mbind asks for, placement)
    "gpu0-cpu0-mem0": (("--cpunodebind=0", "--membind=0"), None, "local"),
    "gpu0-cpu1-mem1": (("--cpunodebind=1", "--membind=1"), None, "remote"),
    "gpu1-cpu0-mem0": (("--cpunodebind=0", "--membind=0"), None, "remote"),
    "gpu1-cpu1-mem1": (("--cpunodebind=1", "--membind=1"), None, "local"),
}
POOL = {  # the worker stays on its GPU's node; only the pool moves
    "gpu0-cpu0-mem0-pool0": (("--cpunodebind=0", "--membind=0"), 0, "local"),
    "gpu0-cpu0-mem0-pool1": (("--cpunodebind=0", "--membind=0"), 1, "remote"),
    "gpu1-cpu1-mem1-pool0": (("--cpunodebind=1", "--membind=1"), 0, "remote"),
    "gpu1-cpu1-mem1-pool1": (("--cpunodebind=1", "--membind=1"), 1, "local"),
}


@pytest.mark.parametrize(("mode", "expected"), [pytest.param("process", PROCESS, id="process"),
                                                 pytest.param("pool", POOL, id="pool")])
def test_process_and_pool_placement_give_the_numactl_argv_and_mbind_calls_expected(topo, mode, expected):
    lanes = plan(topo, f"experiment.hardware.placement={mode}")
    binding_by_lane = {}
    for lane in lanes:
        spec = lane.runs[0]
        assert (lane.placement_mode, spec.placement_mode) == (mode, mode)
        pool_node = spec.pool_node if spec.placement_mode == "pool" else None  # as the worker asks for it
        argv = worker_command(Path("r.json"), Path("f"), lane.gpu_id, lane.cpu_node, lane.mem_node, python="py",
                              pool_node=pool_node).argv
        binder = RecordingMbind()
        HostPool(1, 2, [3, 32, 32], pinned=False, node=pool_node, binder=binder)
        assert [(call[2], call[3], call[5]) for call in binder.calls] == (
            [] if pool_node is None else [(2, (1 << pool_node,), 3)])  # MPOL_BIND, one node, STRICT|MOVE
        binding_by_lane[lane.name] = (tuple(a for a in argv if a.startswith("--")
                                and a.split("=")[0] in ("--cpunodebind", "--membind")), pool_node, spec.placement)
        assert spec.pool_node == (spec.mem_node if mode == "process" else pool_node)
        assert spec.numa_distance == (10 if spec.placement == "local" else 21)
    assert binding_by_lane == expected


def test_pool_and_process_runs_have_different_ids_and_process_keeps_todays(topo):
    process, pool = plan(topo), plan(topo, "experiment.hardware.placement=pool")
    assert not ids(process) & ids(pool)
    assert ids(process) == ids(plan(topo, "experiment.hardware.placement=process", "experiment.test.repeats=1"))
    assert all(".pool." not in run_id for run_id in ids(pool))  # not to be read as a spread run
    groups = plan(topo, "experiment.hardware.placement=pool", "experiment.hardware.gpu_ids=[0,1]",
                  "experiment.hardware.together=true")
    assert all(r.group.id.endswith(".pool") for lane in groups for r in lane.runs)


def test_pool_placement_is_refused_at_plan_time_where_the_host_cannot_bind(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "off")
    host = discover(two_node_host(tmp_path / "2s"), use_nvml=False)
    with pytest.raises(PlacementError,
                       match=r"placement=pool is not possible on .*: numactl not found.*use placement=process"):
        plan(host, "experiment.hardware.placement=pool")
    assert plan(host)  # process placement still plans (and runs unbound, as it says)


def test_pool_placement_needs_the_gpus_own_node(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "/usr/bin/numactl")
    host = discover(make_sysfs(tmp_path / "u", {0: "0-3", 1: "4-7"}, {"0000:3b:00.0": -1}), use_nvml=False)
    with pytest.raises(PlacementError, match="GPU 0 does not report its NUMA node"):
        plan(host, "experiment.hardware.placement=pool")


def test_a_pool_run_of_a_cpu_host_keeps_the_worker_on_the_first_node(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "/usr/bin/numactl")
    host = discover(make_sysfs(tmp_path / "c", {0: "0-3", 1: "4-7"}, {}), use_nvml=False)
    lanes = plan(host, "experiment.hardware.placement=pool")
    assert [lane.name for lane in lanes] == ["cpu-cpu0-mem0-pool0", "cpu-cpu0-mem0-pool1"]
    assert [lane.pool_node for lane in lanes] == [0, 1]


# -- which lanes share a CPU node, and records that say so ----------------------------------------------------
def test_each_run_names_the_other_gpus_lanes_on_its_cpu_node(topo):
    lanes = plan(topo, "experiment.test.repeats=2")
    by_name = {lane.name: lane for lane in lanes}
    shared = by_name["gpu0-cpu0-mem0"].runs[0].node_shared_with
    assert shared == ("gpu1-cpu0-mem0", "gpu1-cpu0-mem0-r1")  # other devices only, bound to node 0
    assert by_name["gpu1-cpu1-mem1-r1"].runs[-1].node_shared_with == ("gpu0-cpu1-mem1", "gpu0-cpu1-mem1-r1")
    alone = device_turns(lanes, max_concurrent=1)  # one lane at a time: nobody shares
    assert all(not r.node_shared_with for turn in alone for lane in turn.lanes for r in lane.runs)
    pool = {lane.name: lane for lane in plan(topo, "experiment.hardware.placement=pool")}
    # in pool placement both of a GPU's lanes stay on its node: the other GPU's lanes are elsewhere
    assert pool["gpu0-cpu0-mem0-pool1"].runs[0].node_shared_with == ()


def test_records_carry_the_new_spec_keys(topo):
    lane = next(lane for lane in plan(topo, "experiment.hardware.placement=pool", "experiment.test.repeats=2")
                if lane.name == "gpu0-cpu0-mem0-pool1-r1")
    spec = lane.runs[0]
    record = results.failed_record(spec, "boom").to_json()
    assert {k: record[k] for k in ("repeat", "placement_mode", "pool_node", "node_shared_with", "lane")} == {
        "repeat": 1, "placement_mode": "pool", "pool_node": 1, "node_shared_with": [],
        "lane": "gpu0-cpu0-mem0-pool1-r1"}
    old = {k: v for k, v in spec.to_json().items()
           if k not in ("repeat", "placement_mode", "pool_node", "node_shared_with")}
    assert {k: results.base_record(RunSpec.from_json(old)).to_json()[k]
            for k in ("repeat", "placement_mode", "pool_node")} == {
        "repeat": 0, "placement_mode": "process", "pool_node": spec.mem_node}  # a spec of before


# -- with real workers ------------------------------------------------------------------------------------------
ONE_TINY_MODEL = ["experiment.test.num_samples=64", "experiment.test.min_trials=3", "experiment.test.max_trials=3",
                  "experiment.test.telemetry=off", "experiment.test.min_trial_s=0",
                  "experiment.vit_configs=[{name:t,patch_size:8,depth:1,heads:2,dim:32,mlp_dim:64}]"]


def _records(folder_path):
    import json

    return [json.loads(p.read_text()) for p in (folder_path / "runs").glob("*.json")]


def test_a_gpus_task_runs_its_repeats_abba_in_separate_workers(tmp_path, monkeypatch, configs_dir, outputs_dir):
    from numa_ops import pipeline
    from numa_ops.operators import NumaLaneOperator

    monkeypatch.setenv("NUMA_LAB_FAKE_GPU", "1")  # no GPU here: measured on the CPU, and said so
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "off")  # the simulated node 1 does not exist here
    monkeypatch.setenv("NUMA_LAB_TORCH_THREADS", "1")
    host = discover(make_sysfs(tmp_path / "sys", {0: "0", 1: "1"}, {"0000:3b:00.0": 0}), use_nvml=False)
    folder_path, lanes = pipeline.prepare("tiny", [*ONE_TINY_MODEL, *BOTH_NODES, "experiment.test.repeats=2"], host)
    (turn,) = device_turns(lanes, max_concurrent=4)
    assert [lane.name for lane in turn.lanes] == [
        "gpu0-cpu0-mem0", "gpu0-cpu1-mem1", "gpu0-cpu1-mem1-r1", "gpu0-cpu0-mem0-r1"]
    outcome = NumaLaneOperator(task_id="measure", lane=turn.to_json()).execute({})
    assert [o["workers_started"] for o in outcome["lanes"]] == [1, 1, 1, 1]  # a worker process each
    recs = sorted(_records(folder_path), key=lambda r: r["started_at"])
    assert all(r["success"] for r in recs), [r.get("error") for r in recs]
    assert [(r["lane"], r["repeat"], r["placement"]) for r in recs] == [
        ("gpu0-cpu0-mem0", 0, "local"), ("gpu0-cpu1-mem1", 0, "remote"),
        ("gpu0-cpu1-mem1-r1", 1, "remote"), ("gpu0-cpu0-mem0-r1", 1, "local")]
    assert all(r["placement_mode"] == "process" and r["pool_node"] == r["mem_node"] for r in recs)


@pytest.mark.skipif(not Path("/proc/self/numa_maps").exists(),
                    reason="needs /proc/self/numa_maps (a kernel with NUMA support)")
def test_a_pool_placed_run_on_this_host_has_its_pool_proven_on_node_0(monkeypatch, configs_dir, outputs_dir):
    import shutil

    from numa_ops import pipeline

    if shutil.which("numactl") is None:
        pytest.skip("needs numactl (./numa-lab test installs it when run as root)")
    monkeypatch.delenv("NUMA_LAB_NUMACTL", raising=False)
    monkeypatch.setenv("NUMA_LAB_TORCH_THREADS", "1")
    host = discover()
    if host.membind_refusal:
        pytest.skip(f"needs a host that can mbind: {host.membind_refusal}")
    folder_path, lanes = pipeline.prepare("tiny", [*ONE_TINY_MODEL, "experiment.hardware.placement=pool"], host)
    assert len(lanes) == 1 and lanes[0].name.endswith("-pool0")
    pipeline.run_lanes(lanes, folder_path, log=lambda _: None)
    (rec,) = _records(folder_path)
    assert rec["success"], rec.get("error")
    assert (rec["placement_mode"], rec["pool_node"], rec["cpu_node"]) == ("pool", 0, 0)
    assert "host pool mbind to node 0" in rec["environment"]["binding"]["numactl"]
    proof = rec["metrics"]["pool_pages"]
    assert proof["fraction_on_intended"] == 1.0 and proof["policy"] == "bind:0"
