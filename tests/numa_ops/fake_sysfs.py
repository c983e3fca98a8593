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
