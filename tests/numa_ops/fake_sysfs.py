"""A small fake sysfs tree: NUMA nodes and NVIDIA PCI devices, as the kernel lays them out."""

from __future__ import annotations

from pathlib import Path


def make_sysfs(
    root: Path,
    nodes: dict[int, str],
    gpus: dict[str, int],
    distances: dict[int, str] | None = None,
) -> Path:
    """``nodes``: node id -> cpulist; ``gpus``: PCI bus id -> numa_node (-1: not reported)."""
    for node, cpulist in nodes.items():
        d = root / "devices/system/node" / f"node{node}"
        d.mkdir(parents=True)
        (d / "cpulist").write_text(cpulist + "\n")
        (d / "meminfo").write_text(f"Node {node} MemTotal:       16384000 kB\nNode {node} MemFree: 1 kB\n")
        if distances:
            (d / "distance").write_text(distances[node] + "\n")
    pci = root / "bus/pci/devices"
    pci.mkdir(parents=True)
    for bus, node in gpus.items():
        d = pci / bus
        d.mkdir()
        (d / "vendor").write_text("0x10de\n")
        (d / "class").write_text("0x030200\n")
        (d / "numa_node").write_text(f"{node}\n")
        (d / "local_cpulist").write_text(nodes.get(node, ",".join(nodes.values())) + "\n")
    other = pci / "0000:00:1f.0"  # a non-NVIDIA device that must be ignored
    other.mkdir()
    (other / "vendor").write_text("0x8086\n")
    (other / "class").write_text("0x060100\n")
    return root


TWO_NODES = {0: "0-7", 1: "8-15"}
TWO_GPUS = {"0000:3b:00.0": 0, "0000:af:00.0": 1}  # GPU 0 on node 0, GPU 1 on node 1
TWO_DISTANCES = {0: "10 21", 1: "21 10"}


def two_node_host(root: Path) -> Path:
    """A two-socket host: nodes 0 and 1 (SLIT 10/21), GPU 0 on node 0 and GPU 1 on node 1."""
    return make_sysfs(root, TWO_NODES, TWO_GPUS, TWO_DISTANCES)


class RecordingMbind:
    """Stands in for ``mbind(2)`` where the node asked for does not exist here (a simulated second node):
    records each call's (address, length, mode, node mask words, maxnode, flags), binds nothing; with
    ``fail`` an errno, raises it as the kernel would."""

    def __init__(self, fail: int | None = None):
        self.calls: list[tuple[int, int, int, tuple[int, ...], int, int]] = []
        self.fail = fail

    def __call__(self, address: int, length: int, mode: int, words, maxnode: int, flags: int) -> None:
        self.calls.append((address, length, mode, tuple(words), maxnode, flags))
        if self.fail is not None:
            import os

            raise OSError(self.fail, os.strerror(self.fail))
