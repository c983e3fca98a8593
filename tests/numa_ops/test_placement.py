"""Placement on simulated hosts (fake sysfs trees): classes, distances, shortcuts, errors, numactl argv."""

from __future__ import annotations

from pathlib import Path

import pytest
from numa_ops.config import load_experiment
from numa_ops.launch import worker_command
from numa_ops.plan import build_plan
from numa_ops.topology import PlacementError, discover

from tests.numa_ops.fake_sysfs import make_sysfs

BUS = ["0000:1b:00.0", "0000:3b:00.0", "0000:8b:00.0", "0000:af:00.0"]


@pytest.fixture
def vm(tmp_path):
    """The lent H100 hosts: one node, every GPU's numa_node -1."""
    return discover(make_sysfs(tmp_path / "vm", {0: "0-63"}, dict.fromkeys(BUS, -1), {0: "10"}), use_nvml=False)


@pytest.fixture
def two_socket(tmp_path):
    """GPUs 0,1 on node 0; 2,3 on node 1; distances 10/21."""
    return discover(
        make_sysfs(tmp_path / "2s", {0: "0-31", 1: "32-63"}, dict(zip(BUS, [0, 0, 1, 1], strict=True)),
                   {0: "10 21", 1: "21 10"}),
        use_nvml=False,
    )


@pytest.fixture
def four_node_gaps(tmp_path):
    """Nodes numbered 0, 2, 3, 5 (as the research plan's numa_nodes=[0,2,3] suggests); one GPU on each."""
    dist = {0: "10 16 16 32", 2: "16 10 32 16", 3: "16 32 10 16", 5: "32 16 16 10"}
    cpus = {0: "0-7", 2: "8-15", 3: "16-23", 5: "24-31"}
    return discover(make_sysfs(tmp_path / "4n", cpus, dict(zip(BUS, [0, 2, 3, 5], strict=True)), dist), use_nvml=False)


def lanes_of(topo, *overrides):
    return build_plan("f", load_experiment("numa_study", ["experiment.test.repeats=1", *overrides]), topo)


def bindings(lanes):
    """(gpu, numactl binding args) per lane, from the argv the launcher builds."""
    out = []
    for lane in lanes:
        argv = worker_command(Path("r.json"), Path("f"), lane.gpu_id, lane.cpu_node, lane.mem_node, python="py").argv
        out.append((lane.gpu_id, tuple(a for a in argv if a.startswith("--cpunodebind") or a.startswith("--membind"))))
    return out


def classes(lanes):
    return {(lane.gpu_id, lane.cpu_node): (lane.runs[0].placement, lane.runs[0].numa_distance) for lane in lanes}


@pytest.fixture(autouse=True)
def _numactl(monkeypatch):
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "/usr/bin/numactl")


def test_vm_one_node(vm):
    lanes = lanes_of(vm)
    assert classes(lanes) == {(g, 0): ("local", 10) for g in range(4)}
    assert bindings(lanes) == [(g, ("--cpunodebind=0", "--membind=0")) for g in range(4)]
    assert bindings(lanes_of(vm, "experiment.hardware.numa_nodes=local")) == bindings(lanes)
    with pytest.raises(PlacementError, match="one NUMA node .0., so no remote placement exists"):
        lanes_of(vm, "experiment.hardware.numa_nodes=remote")
    with pytest.raises(PlacementError, match=r"NUMA node \[2, 3\] not found; nodes on .*: 0$"):
        lanes_of(vm, "experiment.hardware.gpu_ids=[0,3]", "experiment.hardware.numa_nodes=[0,2,3]")


def test_two_socket(two_socket):
    lanes = lanes_of(two_socket, "experiment.hardware.gpu_ids=[0,3]")
    assert classes(lanes) == {
        (0, 0): ("local", 10), (0, 1): ("remote", 21),
        (3, 0): ("remote", 21), (3, 1): ("local", 10),
    }
    assert bindings(lanes) == [
        (0, ("--cpunodebind=0", "--membind=0")), (0, ("--cpunodebind=1", "--membind=1")),
        (3, ("--cpunodebind=0", "--membind=0")), (3, ("--cpunodebind=1", "--membind=1")),
    ]
    local = lanes_of(two_socket, "experiment.hardware.numa_nodes=local")
    assert [(lane.gpu_id, lane.cpu_node) for lane in local] == [(0, 0), (1, 0), (2, 1), (3, 1)]
    remote = lanes_of(two_socket, "experiment.hardware.numa_nodes=remote")
    assert [(lane.gpu_id, lane.cpu_node) for lane in remote] == [(0, 1), (1, 1), (2, 0), (3, 0)]
    with pytest.raises(PlacementError, match=r"GPU \[4\] not found; GPUs on .*: 0, 1, 2, 3"):
        lanes_of(two_socket, "experiment.hardware.gpu_ids=[4]")


def test_four_nodes_with_gaps(four_node_gaps):
    lanes = lanes_of(four_node_gaps, "experiment.hardware.gpu_ids=[0,3]", "experiment.hardware.numa_nodes=[0,2,3]")
    assert classes(lanes) == {
        (0, 0): ("local", 10), (0, 2): ("remote", 16), (0, 3): ("remote", 16),
        (3, 0): ("remote", 32), (3, 2): ("remote", 16), (3, 3): ("remote", 16),
    }
    assert {b for _, b in bindings(lanes)} == {
        ("--cpunodebind=0", "--membind=0"), ("--cpunodebind=2", "--membind=2"), ("--cpunodebind=3", "--membind=3"),
    }
    remote = lanes_of(four_node_gaps, "experiment.hardware.numa_nodes=remote")
    assert [(lane.gpu_id, lane.cpu_node) for lane in remote] == [(0, 5), (1, 3), (2, 2), (3, 0)]  # farthest by SLIT
    with pytest.raises(PlacementError, match=r"NUMA node \[1\] not found; nodes on .*: 0, 2, 3, 5"):
        lanes_of(four_node_gaps, "experiment.hardware.numa_nodes=[0,1]")


def test_unknown_gpu_node_on_a_multi_node_host(tmp_path):
    topo = discover(make_sysfs(tmp_path / "u", {0: "0-3", 1: "4-7"}, {BUS[0]: -1}, {0: "10 21", 1: "21 10"}),
                    use_nvml=False)
    assert classes(lanes_of(topo)) == {(0, 0): ("unknown", None), (0, 1): ("unknown", None)}
    assert any("does not report its NUMA node" in n for n in topo.notes)
    with pytest.raises(PlacementError, match="does not report its NUMA node"):
        lanes_of(topo, "experiment.hardware.numa_nodes=local")
