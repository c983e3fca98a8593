"""The host as it is: NUMA nodes and their CPUs (sysfs), GPUs and their local node (NVML + sysfs).

``sysfs_root`` lets tests read a fake tree. Nothing here imports torch: discovery must be cheap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import platform
import re
import shutil
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NotRequired, TypedDict, cast

from numa_ops import settings

NVIDIA_VENDOR = "0x10de"
DISPLAY_CLASSES = ("0x0300", "0x0302")


class PlacementError(ValueError):
    """A requested GPU or NUMA node that this host does not have."""


class NumaNodeJson(TypedDict):
    id: int
    cpus: list[int]
    mem_total_mb: int | None


class GpuJson(TypedDict):
    index: int
    name: str
    pci_bus_id: str
    numa_node: int | None
    local_cpus: NotRequired[list[int] | None]
    nvml_cpus: NotRequired[list[int] | None]


class TopologyJson(TypedDict):
    """A :class:`Topology` as JSON (``topology.json``, the ``discover_topology`` XCom); an older one may lack the
    keys added since. ``distances``' keys are node ids (strings once through JSON)."""

    host: str
    nodes: list[NumaNodeJson]
    gpus: list[GpuJson]
    distances: NotRequired[dict[int, list[int]] | dict[str, list[int]]]
    gpu_source: NotRequired[str]
    notes: NotRequired[list[str]]
    membind_refusal: NotRequired[str | None]


@dataclass(frozen=True)
class NumaNode:
    """One NUMA node: its CPUs and memory."""

    id: int
    cpus: list[int]
    mem_total_mb: int | None


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU, indexed in PCI bus order (the order NVML uses)."""

    index: int
    name: str
    pci_bus_id: str
    numa_node: int | None  # None: the platform does not say (sysfs -1)
    local_cpus: list[int] | None = None  # sysfs local_cpulist
    nvml_cpus: list[int] | None = None  # NVML's ideal CPU affinity


@dataclass(frozen=True)
class Topology:
    """A snapshot of the host's NUMA nodes and GPUs."""

    host: str
    nodes: list[NumaNode]
    gpus: list[Gpu]
    distances: dict[int, list[int]] = field(default_factory=dict)
    gpu_source: str = "none"  # "nvml", "sysfs" or "none"
    notes: list[str] = field(default_factory=list)
    # why this host cannot bind a buffer to a NUMA node for hardware.placement=pool; None: it can (or unknown)
    membind_refusal: str | None = None

    @property
    def node_ids(self) -> list[int]:
        return [n.id for n in self.nodes]

    def to_dict(self) -> TopologyJson:
        return cast(TopologyJson, asdict(self))

    @classmethod
    def from_dict(cls, data: TopologyJson) -> Topology:
        return cls(
            host=data["host"],
            nodes=[NumaNode(**n) for n in data["nodes"]],
            gpus=[Gpu(**g) for g in data["gpus"]],
            distances={int(k): v for k, v in data.get("distances", {}).items()},
            gpu_source=data.get("gpu_source", "none"),
            notes=list(data.get("notes", [])),
            membind_refusal=data.get("membind_refusal"),
        )


def parse_cpulist(text: str) -> list[int]:
    """Parse a kernel cpulist such as ``0-3,8,10-11``."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _nodes(sysfs: Path) -> tuple[list[NumaNode], dict[int, list[int]]]:
    base = sysfs / "devices/system/node"
    nodes, distances = [], {}
    for path in sorted(base.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        node_id = int(path.name[4:])
        mem = None
        meminfo = _read(path / "meminfo") or ""
        match = re.search(r"MemTotal:\s+(\d+)\s*kB", meminfo)
        if match:
            mem = int(match.group(1)) // 1024
        nodes.append(NumaNode(node_id, parse_cpulist(_read(path / "cpulist") or ""), mem))
        dist = _read(path / "distance")
        if dist:
            distances[node_id] = [int(x) for x in dist.split()]
    if not nodes:  # kernel without NUMA support: one node holding every CPU
        nodes = [NumaNode(0, list(range(os.cpu_count() or 1)), None)]
        distances = {0: [10]}
    return nodes, distances


def _pci_numa(sysfs: Path, bus_id: str) -> tuple[int | None, list[int] | None]:
    dev = sysfs / "bus/pci/devices" / _sysfs_bus_id(bus_id)
    raw = _read(dev / "numa_node")
    node = int(raw) if raw not in (None, "") and int(raw) >= 0 else None
    cpus = _read(dev / "local_cpulist")
    return node, parse_cpulist(cpus) if cpus else None


def _sysfs_bus_id(bus_id: str) -> str:
    # NVML gives 00000000:3B:00.0, sysfs names 0000:3b:00.0
    domain, rest = bus_id.split(":", 1)
    return f"{int(domain, 16):04x}:{rest}".lower()


def _gpus_from_nvml(sysfs: Path) -> list[Gpu] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVML absent or no driver: no GPUs from it
        return None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            bus = pynvml.nvmlDeviceGetPciInfo(handle).busId
            name = name.decode() if isinstance(name, bytes) else name
            bus = bus.decode() if isinstance(bus, bytes) else bus
            node, cpus = _pci_numa(sysfs, bus)
            gpus.append(Gpu(i, name, bus, node, cpus, _nvml_affinity(pynvml, handle)))
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _nvml_affinity(pynvml, handle) -> list[int] | None:
    """CPUs NVML calls ideal for this GPU (a bitmask of 64-bit words)."""
    try:
        words = pynvml.nvmlDeviceGetCpuAffinity(handle, max(1, ((os.cpu_count() or 1) + 63) // 64))
    except Exception:  # noqa: BLE001 - not supported on every platform
        return None
    return [w * 64 + b for w, word in enumerate(words) for b in range(64) if int(word) >> b & 1]


def _gpus_from_sysfs(sysfs: Path) -> list[Gpu]:
    found = []
    for dev in sorted((sysfs / "bus/pci/devices").glob("*")):
        if _read(dev / "vendor") == NVIDIA_VENDOR and (_read(dev / "class") or "").startswith(DISPLAY_CLASSES):
            found.append(dev.name)
    gpus = []
    for i, bus in enumerate(found):
        node, cpus = _pci_numa(sysfs, bus)
        gpus.append(Gpu(i, "NVIDIA GPU (name unknown without NVML)", bus, node, cpus))
    return gpus


def discover(sysfs_root: str | Path = "/sys", use_nvml: bool = True) -> Topology:
    """Read this host's NUMA nodes and GPUs; works with no GPU and with no NVML."""
    sysfs = Path(sysfs_root)
    nodes, distances = _nodes(sysfs)
    notes = []
    gpus = _gpus_from_nvml(sysfs) if use_nvml else None
    source = "nvml"
    if gpus is None:
        gpus, source = _gpus_from_sysfs(sysfs), "sysfs"
        if gpus:
            notes.append("NVML unavailable: GPUs read from sysfs in PCI bus order")
    if not gpus:
        source = "none"
        notes.append("no NVIDIA GPU found: runs use the CPU")
    if len(nodes) == 1:
        notes.append("one NUMA node: no remote placement exists on this host")
    refusal = membind_refusal()
    if refusal:
        notes.append(f"hardware.placement=pool is not available: {refusal}")
    for g in gpus:
        if g.numa_node is None and len(nodes) > 1:
            notes.append(f"GPU {g.index} ({g.pci_bus_id}) does not report its NUMA node: its placements are 'unknown'")
        if g.numa_node is not None and g.nvml_cpus and g.local_cpus and set(g.nvml_cpus) != set(g.local_cpus):
            notes.append(f"GPU {g.index}: NVML's CPU affinity differs from sysfs local_cpulist; sysfs is used")
    return Topology(socket.gethostname(), nodes, gpus, distances, source, notes, refusal)


def resolve_gpus(requested: str | list[int], topo: Topology) -> list[int | None]:
    """GPU indices to use; ``[None]`` means the CPU (only when the host has no GPU and ``all``)."""
    have = [g.index for g in topo.gpus]
    if requested == "all":
        return list(have) if have else [None]
    missing = [g for g in requested if g not in have]
    if missing:
        found = ", ".join(map(str, have)) if have else "none (this host has no NVIDIA GPU; gpu_ids=all runs on the CPU)"
        raise PlacementError(f"experiment.hardware.gpu_ids: GPU {missing} not found; GPUs on {topo.host}: {found}")
    return list(requested)


def _gpu(topo: Topology, gpu: int) -> Gpu:
    return next(g for g in topo.gpus if g.index == gpu)


def distance(topo: Topology, a: int, b: int) -> int | None:
    """SLIT distance from node ``a`` to node ``b`` (None if the kernel gives none)."""
    row = topo.distances.get(a)
    ids = topo.node_ids
    return row[ids.index(b)] if row and b in ids and len(row) == len(ids) else None


def resolve_nodes(requested: str | list[int], topo: Topology, gpu: int | None = None) -> list[int]:
    """NUMA node ids to bind a lane to, checked against the host.

    ``all``: every node; ``local``: the GPU's own node; ``remote``: the node farthest from the GPU. On the CPU
    (no GPU) the device's own node is the host's first (:func:`home_node`).
    """
    have = topo.node_ids
    if requested == "all":
        return list(have)
    if requested in ("local", "remote"):
        if gpu is None:
            home = have[0]
        else:
            g = _gpu(topo, gpu)
            home = g.numa_node if g.numa_node is not None else (have[0] if len(have) == 1 else None)
        if home is None:
            raise PlacementError(
                f"experiment.hardware.numa_nodes={requested}: GPU {gpu} does not report its NUMA node on "
                f"{topo.host}; name the nodes instead (nodes: {', '.join(map(str, have))})"
            )
        if requested == "local":
            return [home]
        others = [n for n in have if n != home]
        if not others:
            raise PlacementError(
                f"experiment.hardware.numa_nodes=remote: {topo.host} has one NUMA node ({home}), so no remote "
                "placement exists; nothing is measured rather than a placement invented"
            )
        return [max(others, key=lambda n: (distance(topo, home, n) or 0, -n))]
    missing = [n for n in requested if n not in have]
    if missing:
        raise PlacementError(
            f"experiment.hardware.numa_nodes: NUMA node {missing} not found; nodes on {topo.host}: "
            f"{', '.join(map(str, have))}"
        )
    return list(requested)


def placement(gpu: int | None, node: int, topo: Topology) -> str:
    """``local``, ``remote`` or ``unknown`` for a GPU run bound to ``node`` (``cpu`` on the CPU)."""
    return placement_of(gpu, node, topo)[0]


def placement_of(gpu: int | None, node: int, topo: Topology) -> tuple[str, int | None]:
    """(class, SLIT distance from the GPU's node to ``node``) for a run bound to ``node``.

    On the CPU: ``cpu`` on a one-node host; with several nodes the CPU device's own node is the host's first
    (:func:`home_node`, where a ``pool`` worker runs), so a run on another node is ``remote``.
    """
    if gpu is None:
        if len(topo.nodes) == 1:
            return "cpu", None
        home = topo.node_ids[0]
        return ("local" if node == home else "remote"), distance(topo, home, node)
    g = _gpu(topo, gpu)
    if g.numa_node is None:
        if len(topo.nodes) == 1:
            return "local", distance(topo, node, node)
        return "unknown", None
    return ("local" if g.numa_node == node else "remote"), distance(topo, g.numa_node, node)


def home_node(gpu: int | None, topo: Topology) -> int:
    """The node a ``hardware.placement=pool`` worker runs on: the GPU's own (the host's first on the CPU)."""
    have = topo.node_ids
    if gpu is None:
        return have[0]
    g = _gpu(topo, gpu)
    if g.numa_node is not None:
        return g.numa_node
    if len(have) == 1:
        return have[0]
    raise PlacementError(
        f"experiment.hardware.placement=pool: GPU {gpu} does not report its NUMA node on {topo.host}, so the "
        "worker cannot be kept on it; use placement=process"
    )


# -- binding memory to a node (hardware.placement=pool) -------------------------------------------------------
MPOL_BIND = 2
MPOL_MF_STRICT = 1  # fail if a page of the range is already elsewhere and cannot be moved
MPOL_MF_MOVE = 2  # move pages of the range that are already elsewhere (none, for a fresh mapping)
_SYS_MBIND = {"x86_64": 237, "amd64": 237, "aarch64": 235, "arm64": 235}  # elsewhere: libnuma's mbind

# mbind(address, length, mode, nodemask words, maxnode, flags): raises OSError (with errno) on failure
Binder = Callable[[int, int, int, Sequence[int], int, int], None]


def numactl_path() -> str | None:
    """The ``numactl`` binary, or None if this host has none (``NUMA_LAB_NUMACTL`` overrides; ``off``: none)."""
    configured = settings.numactl_override()
    if configured == "off":
        return None
    return configured or shutil.which("numactl")


def nodemask(node: int) -> tuple[list[int], int]:
    """(the words of an ``unsigned long`` node mask holding only ``node``, ``maxnode`` to pass with it).

    The kernel reads ``maxnode - 1`` bits, so one more than the mask's bits is passed (as libnuma does).
    """
    if not isinstance(node, int) or node < 0:
        raise ValueError(f"a NUMA node must be a non-negative integer, got {node!r}")
    words = [0] * (node // 64 + 1)
    words[node // 64] = 1 << (node % 64)
    return words, 64 * len(words) + 1


def _mbind_call() -> Callable[..., int] | None:
    """The raw mbind: the syscall through libc, else libnuma's ``mbind``; None where neither exists."""
    number = _SYS_MBIND.get(platform.machine().lower())
    if number is not None and os.name == "posix":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        return lambda *args: libc.syscall(ctypes.c_long(number), *args)
    name = ctypes.util.find_library("numa")
    if name:
        try:
            fn = ctypes.CDLL(name, use_errno=True).mbind
        except (OSError, AttributeError):
            return None
        fn.restype = ctypes.c_long
        return fn
    return None


def mbind(address: int, length: int, mode: int, words: Sequence[int], maxnode: int, flags: int) -> None:
    """The kernel's ``mbind(2)`` on ``[address, address + length)``; raises OSError with the kernel's errno."""
    call = _mbind_call()
    if call is None:
        raise OSError(errno.ENOSYS, f"no mbind on this platform ({platform.machine()}) and no libnuma")
    mask = (ctypes.c_ulong * len(words))(*words)
    rc = call(ctypes.c_void_p(address), ctypes.c_ulong(length), ctypes.c_int(mode), mask,
              ctypes.c_ulong(maxnode), ctypes.c_uint(flags))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _allowed_node() -> int:
    """The lowest node this process may allocate on (``Mems_allowed_list``), 0 if the kernel does not say."""
    try:
        for line in open("/proc/self/status").read().splitlines():  # noqa: SIM115 - tiny read
            if line.startswith("Mems_allowed_list:"):
                return int(re.split(r"[-,]", line.split(":", 1)[1].strip())[0])
    except (OSError, ValueError):
        pass
    return 0


def membind_refusal(binder: Binder | None = None) -> str | None:
    """Why this host cannot run ``hardware.placement=pool`` (None: it can).

    It needs numactl (to keep the worker on the GPU's node) and a working mbind: one page is mapped and
    bound to a node this process may use, as the worker will bind its pool.
    """
    if numactl_path() is None:
        return ("numactl not found (or NUMA_LAB_NUMACTL=off): the worker could not be kept on the GPU's node "
                "while its pool is bound elsewhere")
    region = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    anchor = ctypes.c_char.from_buffer(region)
    try:
        words, maxnode = nodemask(_allowed_node())
        (binder or mbind)(ctypes.addressof(anchor), mmap.PAGESIZE, MPOL_BIND, words, maxnode,
                          MPOL_MF_STRICT | MPOL_MF_MOVE)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        return f"mbind failed with {name} ({exc.strerror}): this host (or its container) cannot bind memory to a node"
    finally:
        del anchor
        region.close()
    return None
