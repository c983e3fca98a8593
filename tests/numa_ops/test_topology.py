from __future__ import annotations

import errno
import shutil

import pytest
from numa_ops.topology import (
    MPOL_BIND,
    MPOL_MF_MOVE,
    MPOL_MF_STRICT,
    PlacementError,
    Topology,
    discover,
    home_node,
    membind_refusal,
    nodemask,
    parse_cpulist,
    placement,
    placement_of,
    resolve_gpus,
    resolve_nodes,
)

from tests.numa_ops.fake_sysfs import RecordingMbind, make_sysfs, two_node_host


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        pytest.param("0-3", [0, 1, 2, 3], id="range"),
        pytest.param("0-1,8,10-11", [0, 1, 8, 10, 11], id="mixed"),
        pytest.param("5\n", [5], id="single"),
        pytest.param("", [], id="empty"),
    ],
)
def test_parse_cpulist(text, cpus):
    assert parse_cpulist(text) == cpus


@pytest.fixture
def one_node_vm(tmp_path):
    """Like the lent H100 hosts: one node, GPUs whose numa_node is -1."""
    return make_sysfs(tmp_path / "vm", {0: "0-15"}, {"0000:1b:00.0": -1, "0000:2b:00.0": -1}, {0: "10"})


@pytest.fixture
def two_socket(tmp_path):
    """Two nodes, GPU 0 on node 0 and GPU 1 on node 1."""
    return make_sysfs(
        tmp_path / "2s",
        {0: "0-7", 1: "8-15"},
        {"0000:3b:00.0": 0, "0000:af:00.0": 1},
        {0: "10 21", 1: "21 10"},
    )


def test_one_node_vm(one_node_vm):
    topo = discover(one_node_vm, use_nvml=False)
    assert topo.node_ids == [0]
    assert [g.pci_bus_id for g in topo.gpus] == ["0000:1b:00.0", "0000:2b:00.0"]
    assert all(g.numa_node is None for g in topo.gpus)
    assert "one NUMA node: no remote placement exists on this host" in topo.notes
    assert placement(0, 0, topo) == "local"


def test_two_socket(two_socket):
    topo = discover(two_socket, use_nvml=False)
    assert topo.node_ids == [0, 1]
    assert topo.nodes[1].cpus == list(range(8, 16))
    assert topo.nodes[0].mem_total_mb == 16000
    assert topo.distances == {0: [10, 21], 1: [21, 10]}
    assert [g.numa_node for g in topo.gpus] == [0, 1]
    assert placement(0, 0, topo) == "local"
    assert placement(0, 1, topo) == "remote"
    assert placement(1, 0, topo) == "remote"


def test_no_gpu_runs_on_cpu(tmp_path):
    topo = discover(make_sysfs(tmp_path / "cpu", {0: "0-1"}, {}), use_nvml=False)
    assert topo.gpus == [] and topo.gpu_source == "none"
    assert resolve_gpus("all", topo) == [None]
    with pytest.raises(PlacementError, match=r"GPU \[7\] not found; GPUs on .*: none"):
        resolve_gpus([7], topo)


@pytest.fixture
def two_node_cpu(tmp_path):
    """A two-node host without a GPU, as a two-node guest kernel lays it out: one CPU a node, SLIT 10/21."""
    return discover(make_sysfs(tmp_path / "cpu2", {0: "0", 1: "1"}, {}, {0: "10 21", 1: "21 10"}), use_nvml=False)


@pytest.mark.parametrize(
    ("node", "expected"),
    [pytest.param(0, ("local", 10), id="home-node"), pytest.param(1, ("remote", 21), id="other-node")],
)
def test_cpu_runs_on_two_nodes_are_local_or_remote_to_the_first(two_node_cpu, node, expected):
    assert placement_of(None, node, two_node_cpu) == expected
    assert home_node(None, two_node_cpu) == 0


def test_cpu_runs_on_one_node_stay_cpu(tmp_path):
    topo = discover(make_sysfs(tmp_path / "cpu1", {0: "0-1"}, {}, {0: "10"}), use_nvml=False)
    assert placement_of(None, 0, topo) == ("cpu", None)
    with pytest.raises(PlacementError, match="has one NUMA node"):
        resolve_nodes("remote", topo)


@pytest.mark.parametrize(
    ("requested", "nodes"),
    [pytest.param("local", [0], id="local"), pytest.param("remote", [1], id="remote"),
     pytest.param("all", [0, 1], id="all")],
)
def test_cpu_resolves_local_and_remote_nodes(two_node_cpu, requested, nodes):
    assert resolve_nodes(requested, two_node_cpu) == nodes


def test_a_node_the_host_lacks_is_refused_on_the_cpu(two_node_cpu):
    with pytest.raises(PlacementError, match=r"NUMA node \[2\] not found; nodes on .*: 0, 1"):
        resolve_nodes([2], two_node_cpu)


def test_missing_gpu_and_node_are_named(two_socket):
    topo = discover(two_socket, use_nvml=False)
    with pytest.raises(PlacementError, match=r"gpu_ids: GPU \[7\] not found; GPUs on .*: 0, 1"):
        resolve_gpus([0, 7], topo)
    with pytest.raises(PlacementError, match=r"numa_nodes: NUMA node \[5\] not found; nodes on .*: 0, 1"):
        resolve_nodes([5], topo)
    assert resolve_nodes("all", topo) == [0, 1]
    assert resolve_gpus("all", topo) == [0, 1]


def test_round_trip(two_socket):
    topo = discover(two_socket, use_nvml=False)
    assert Topology.from_dict(topo.to_dict()) == topo


def test_this_host_discovers():
    topo = discover()
    assert topo.nodes and all(n.cpus for n in topo.nodes)


# -- can this host bind memory to a node (hardware.placement=pool)? ---------------------------------------------
@pytest.mark.skipif(shutil.which("numactl") is None,
                    reason="needs numactl (./numa-lab test installs it when run as root)")
def test_this_host_binds_memory_with_real_numactl_and_mbind(monkeypatch):
    monkeypatch.delenv("NUMA_LAB_NUMACTL", raising=False)
    assert membind_refusal() is None


@pytest.mark.parametrize(
    ("numactl", "fail", "says"),
    [
        pytest.param("off", None, "numactl not found (or NUMA_LAB_NUMACTL=off)", id="numactl-off"),
        pytest.param("/usr/bin/numactl", errno.EPERM, "mbind failed with EPERM", id="mbind-eperm"),
        pytest.param("/usr/bin/numactl", errno.EINVAL, "mbind failed with EINVAL", id="mbind-einval"),
        pytest.param("/usr/bin/numactl", errno.ENOSYS, "mbind failed with ENOSYS", id="no-mbind"),
    ],
)
def test_pool_placement_is_refused_where_memory_cannot_be_bound(monkeypatch, numactl, fail, says):
    monkeypatch.setenv("NUMA_LAB_NUMACTL", numactl)
    binder = RecordingMbind(fail)
    reason = membind_refusal(binder)
    assert reason is not None and says in reason
    if numactl != "off":  # the probe binds one page, as the worker binds its pool
        ((_, length, mode, words, maxnode, flags),) = binder.calls
        assert (mode, flags, maxnode) == (MPOL_BIND, MPOL_MF_STRICT | MPOL_MF_MOVE, 65) and length > 0
        assert sum(bin(w).count("1") for w in words) == 1


def test_discover_says_when_pool_placement_is_not_available(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "off")
    topo = discover(two_node_host(tmp_path / "2s"), use_nvml=False)
    assert topo.membind_refusal and topo.membind_refusal.startswith("numactl not found")
    assert any(n.startswith("hardware.placement=pool is not available: numactl not found") for n in topo.notes)
    assert Topology.from_dict(topo.to_dict()) == topo
    assert Topology.from_dict({**topo.to_dict(), "membind_refusal": None}).membind_refusal is None
    old = {k: v for k, v in topo.to_dict().items() if k != "membind_refusal"}  # a topology.json of before
    assert Topology.from_dict(old).membind_refusal is None


@pytest.mark.parametrize(
    ("node", "words", "maxnode"),
    [pytest.param(0, [1], 65, id="node0"), pytest.param(1, [2], 65, id="node1"),
     pytest.param(63, [1 << 63], 65, id="node63"), pytest.param(64, [0, 1], 129, id="node64")],
)
def test_nodemask(node, words, maxnode):
    assert nodemask(node) == (words, maxnode)


def test_home_node_is_the_gpus_own(tmp_path, one_node_vm):
    two = discover(two_node_host(tmp_path / "2s"), use_nvml=False)
    assert [home_node(g, two) for g in (0, 1, None)] == [0, 1, 0]
    vm = discover(one_node_vm, use_nvml=False)  # numa_node -1 on one node: that node
    assert home_node(0, vm) == 0
    unknown = discover(make_sysfs(tmp_path / "u", {0: "0-3", 1: "4-7"}, {"0000:3b:00.0": -1}), use_nvml=False)
    with pytest.raises(PlacementError, match="placement=pool: GPU 0 does not report its NUMA node"):
        home_node(0, unknown)
