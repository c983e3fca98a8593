from __future__ import annotations

from pathlib import Path

import pytest
from numa_ops import launch
from numa_ops.launch import worker_command


def test_bound_argv(monkeypatch):
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "/usr/bin/numactl")
    launch = worker_command(Path("/o/f/lanes/x.json"), Path("/o/f"), 3, 1, 1, python="/py")
    assert launch.argv == [
        "/usr/bin/numactl", "--cpunodebind=1", "--membind=1",
        "/py", "-m", "numa_ops.worker", "--runs", "/o/f/lanes/x.json", "--folder-path", "/o/f",
    ]
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "3"
    assert launch.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_cpu_lane_hides_gpus_and_unbound_is_said(monkeypatch):
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "off")
    launch = worker_command(Path("r.json"), Path("f"), None, 0, 0, python="/py")
    assert launch.argv[0] == "/py"
    assert launch.env["CUDA_VISIBLE_DEVICES"] == ""
    assert launch.binding.startswith("none")


@pytest.mark.parametrize(
    ("gpu", "cpu", "mem"),
    [pytest.param("0; rm -rf ~", 0, 0, id="gpu-string"), pytest.param(0, "0 --all", 0, id="node-string"),
     pytest.param(0, 0, -1, id="negative")],
)
def test_refuses_non_integers(gpu, cpu, mem):
    with pytest.raises(ValueError):
        worker_command(Path("r.json"), Path("f"), gpu, cpu, mem)


@pytest.mark.parametrize(
    ("pool_node", "binding"),
    [pytest.param(None, "numactl --cpunodebind=0 --membind=0", id="process"),
     pytest.param(1, "numactl --cpunodebind=0 --membind=0; host pool mbind to node 1", id="pool")],
)
def test_pool_placement_keeps_the_worker_on_its_node(monkeypatch, pool_node, binding):
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "/usr/bin/numactl")
    launch = worker_command(Path("r.json"), Path("f"), 0, 0, 0, python="/py", pool_node=pool_node)
    assert launch.argv[:3] == ["/usr/bin/numactl", "--cpunodebind=0", "--membind=0"]  # the pool binds itself
    assert launch.binding == launch.env["NUMA_LAB_BINDING"] == binding


def test_pool_placement_without_numactl_is_refused_not_run_unbound(monkeypatch):
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "off")
    with pytest.raises(launch.BindingRefused,
                       match="placement=pool: numactl not found .* use hardware.placement=process"):
        worker_command(Path("r.json"), Path("f"), 0, 0, 0, python="/py", pool_node=1)
    with pytest.raises(ValueError, match="pool_node"):
        worker_command(Path("r.json"), Path("f"), 0, 0, 0, pool_node=-1)
