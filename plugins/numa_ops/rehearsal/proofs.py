"""What the rehearsal proved, read back from what the guest wrote: its records, its DuckDB file, its report.

Nothing is taken from the plan's intent: a remote side (a run, or a paired run's arm) counts as proven only where
its record's numa_maps count puts its pages on the remote node, and its launching thread ran on the node it was
bound to.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from numa_ops.record import PairedArm, PoolPages, RunRecord

if TYPE_CHECKING:
    from numa_ops.topology import TopologyJson

REMOTE_NODE = 1
PENALTY_HEADING = "NUMA penalty (remote vs local"


@dataclass
class Rehearsal:
    """The counts the closing line gives, and every problem found (none: it passed)."""

    nodes: int = 0
    distance: int | None = None
    runs: int = 0
    local: int = 0
    remote: int = 0
    remote_pages_proven: int = 0
    penalty_rows: int = 0
    report: str | None = None
    gate: str | None = None
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one line that says what ran (a paired run's arms count as its local and remote sides)."""
        return (f"two-node rehearsal: {self.nodes} nodes (distance {self.distance}), {self.runs} runs ({self.local} "
                f"local, {self.remote} remote sides), node-{REMOTE_NODE} pages proven in {self.remote_pages_proven}, "
                f"penalty views: {self.penalty_rows} rows, report: {self.report}")


class RefusalJson(TypedDict):
    """``guest.json``'s ``refusal``: planning on a node the guest lacks, as the guest tried it."""

    args: list[str]
    rc: int
    stderr: str
    new_folders: list[str]


class GuestJson(TypedDict, total=False):
    """``guest.json``: what each of the guest's steps gave, and their seconds."""

    seconds: dict[str, float]
    venv_mount_problem: str | None
    numactl_hardware: str
    refusal: RefusalJson
    run_args: list[str]
    run_rc: int
    folder: str | None


@dataclass(frozen=True)
class NumactlHardware:
    """``numactl --hardware``: each node's CPUs and its row of distances."""

    cpus: dict[int, list[int]]
    distances: dict[int, list[int]]


def parse_numactl(text: str) -> NumactlHardware:
    """``numactl --hardware``, read as the kernel prints it."""
    cpus = {int(n): [int(c) for c in rest.split()] for n, rest in re.findall(r"^node (\d+) cpus:(.*)$", text, re.M)}
    distances: dict[int, list[int]] = {}
    table = text.split("node distances:", 1)[1] if "node distances:" in text else ""
    for line in table.strip().splitlines()[1:]:
        head, _, rest = line.partition(":")
        if head.strip().isdigit():
            distances[int(head)] = [int(x) for x in rest.split()]
    return NumactlHardware(cpus=cpus, distances=distances)


def check_topology(found: Rehearsal, numactl_text: str, snapshot: TopologyJson | None) -> None:
    """The run folder's topology snapshot must be the guest kernel's, as numactl reads it: two nodes."""
    kernel = parse_numactl(numactl_text)
    found.nodes = len(kernel.cpus)
    found.distance = (kernel.distances.get(0) or [None, None])[1] if found.nodes > 1 else None
    if found.nodes != 2:
        found.problems.append(f"the guest has {found.nodes} NUMA node(s), not 2:\n{numactl_text}")
    snapshot = snapshot or {"host": "", "nodes": [], "gpus": []}
    taken = {n["id"]: n["cpus"] for n in snapshot.get("nodes", [])}
    if taken != kernel.cpus:
        found.problems.append(f"topology.json's nodes {taken} are not the kernel's {kernel.cpus}")
    distances = {int(k): v for k, v in snapshot.get("distances", {}).items()}
    if distances != kernel.distances:
        found.problems.append(f"topology.json's distances {distances} are not the kernel's {kernel.distances}")


def _pages_on(proof: PoolPages | None, node: int | None) -> bool:
    """Whether a numa_maps proof puts every page of the buffer on ``node``."""
    by_node = (proof.by_node if proof else None) or {}
    return proof is not None and proof.source == "numa_maps" and bool(by_node) and set(by_node) == {str(node)}


def check_record(found: Rehearsal, rec: RunRecord, cpu_nodes: dict[int, int]) -> None:
    """One run: it succeeded, its launching thread ran on its bound node, its pool's pages are where planned;
    a paired run, the same of each arm. ``cpu_nodes``: CPU -> node, as the guest's topology has it."""
    run = rec.run_id
    found.runs += 1
    if not rec.success or rec.metrics is None:
        found.problems.append(f"{run} failed: {rec.error}")
        return
    metrics = rec.metrics
    if rec.placement_mode == "paired":
        for arm in metrics.paired.arms if metrics.paired else []:
            _check_arm(found, run, rec.paired, arm, cpu_nodes)
        return
    placement, pool_node = rec.placement, rec.pool_node
    _count_side(found, run, placement)
    if metrics.launch_cpu_node != rec.cpu_node:
        found.problems.append(f"{run}: launching thread on CPU {metrics.launch_cpu} (node "
                              f"{metrics.launch_cpu_node}), not on its bound node {rec.cpu_node}")
    _check_pages(found, run, placement, metrics.pool_pages, pool_node)


def _count_side(found: Rehearsal, run: str, placement: str | None) -> None:
    found.local += placement == "local"
    found.remote += placement == "remote"
    if placement not in ("local", "remote"):
        found.problems.append(f"{run}: placement {placement!r}, neither local nor remote")


def _check_pages(found: Rehearsal, run: str, placement: str | None, proof: PoolPages | None, node: int | None) -> None:
    if not _pages_on(proof, node):
        pages = proof.model_dump() if proof else None
        found.problems.append(f"{run}: its pool's pages are not all on node {node}: {pages}")
    elif placement == "remote" and node == REMOTE_NODE:
        found.remote_pages_proven += 1


def _check_arm(found: Rehearsal, run: str, kind: str | None, arm: PairedArm, cpu_nodes: dict[int, int]) -> None:
    """A paired arm: its pool's pages on its pool node, and every trial's launching CPU on its thread node."""
    name = f"{run} arm {arm.name}"
    _count_side(found, name, arm.placement)
    _check_pages(found, name, arm.placement, arm.pool_pages, arm.pool_node)
    cpus = arm.launch_cpus
    nodes = {None if c is None else cpu_nodes.get(c) for c in cpus}
    if not cpus or nodes != {arm.thread_node}:
        found.problems.append(f"{name} ({kind}): launching CPUs {cpus} (nodes {sorted(nodes, key=str)}), not all on "
                              f"its thread node {arm.thread_node}")


def check_penalties(found: Rehearsal, rows: list[dict[str, Any]], paired: list[dict[str, Any]]) -> None:
    """``numa_penalty``: one row for the separate-process placement, with a local and a remote process;
    ``paired_penalty``: one row per paired kind (memory, thread), each with its interval and MDE."""
    found.penalty_rows = len(rows) + len(paired)
    modes = sorted(r["placement_mode"] for r in rows)
    if modes != ["process"]:
        found.problems.append(f"numa_penalty has rows for placement modes {modes}, not one for process")
    for r in rows:
        if r["local_processes"] < 1 or r["remote_processes"] < 1 or r["throughput_penalty"] is None:
            found.problems.append(f"numa_penalty ({r['placement_mode']}): {r['local_processes']} local and "
                                  f"{r['remote_processes']} remote processes: no penalty ({r['status']})")
    kinds = sorted(r["kind"] for r in paired)
    if kinds != ["memory", "thread"]:
        found.problems.append(f"paired_penalty has rows for kinds {kinds}, not one each for memory and thread")
    for r in paired:
        if r["penalty_low"] is None or r["mde"] is None or r["arm_node"] != REMOTE_NODE:
            found.problems.append(f"paired_penalty ({r['kind']}): arm on node {r['arm_node']}, interval "
                                  f"[{r['penalty_low']}, {r['penalty_high']}], MDE {r['mde']}")


def check_refusal(found: Rehearsal, refusal: RefusalJson | None) -> None:
    """A node the guest lacks: refused by the planner (exit status 2, its message), no run folder made."""
    if not refusal:
        found.problems.append("the refused placement was not tried")
        return
    said = refusal.get("stderr") or ""
    if refusal.get("rc") != 2 or "NUMA node [2] not found" not in said:
        found.problems.append(f"a placement on node 2 was not refused by the planner: rc {refusal.get('rc')}, {said!r}")
    if refusal.get("new_folders"):
        found.problems.append(f"the refused placement still made run folders: {refusal['new_folders']}")


def view_rows(database: Path, view: str, folder: str) -> list[dict[str, Any]]:
    """The rehearsal folder's rows of ``view``, from its DuckDB file (read-only)."""
    import duckdb

    from numa_ops.db.views import VIEWS, scoped

    con = duckdb.connect(str(database), read_only=True)
    try:
        cur = con.execute(scoped(VIEWS[view], "folder = ?"), [folder])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def judge(outputs: Path, guest_json: str = "guest.json") -> Rehearsal:
    """Every proof over what the guest left in ``outputs``."""
    from numa_ops import results
    from numa_ops.db.connection import db_path
    from numa_ops.gate import GateVerdict

    found = Rehearsal()
    path = outputs / guest_json
    if not path.is_file():
        found.problems.append(f"the guest wrote no {path} (see its output above)")
        return found
    guest: GuestJson = json.loads(path.read_text())
    check_refusal(found, guest.get("refusal"))
    if guest.get("run_rc") != 0:
        found.problems.append(f"python -m numa_ops run exited {guest.get('run_rc')}")
    folder = Path(guest["folder"]) if guest.get("folder") else None
    if folder is None or not (folder / "plan.json").is_file():
        found.problems.append("the run made no run folder")
        return found
    topo_file = folder / "topology.json"
    snapshot: TopologyJson | None = json.loads(topo_file.read_text()) if topo_file.is_file() else None
    check_topology(found, guest.get("numactl_hardware") or "", snapshot)
    planned = json.loads((folder / "plan.json").read_text()).get("runs")
    cpu_nodes = {cpu: n["id"] for n in (snapshot or {}).get("nodes", []) for cpu in n["cpus"]}
    for rec in results.collect(folder):
        check_record(found, rec, cpu_nodes)
    if found.runs != planned:
        found.problems.append(f"{found.runs} records for {planned} planned runs")
    database = db_path(outputs)
    if database.is_file():
        check_penalties(found, view_rows(database, "numa_penalty", folder.name),
                        view_rows(database, "paired_penalty", folder.name))
    else:
        found.problems.append(f"no DuckDB file at {database}")
    index = folder / "report" / "index.html"
    if index.is_file() and PENALTY_HEADING in index.read_text():
        found.report = str(index)
    else:
        found.problems.append(f"the report {index} is missing or has no NUMA penalty section")
    gate_file = folder / "gate.json"
    if not gate_file.is_file():
        found.problems.append("the gate wrote no verdict (gate.json)")
    else:
        found.gate = GateVerdict.from_json(json.loads(gate_file.read_text())).said()
    return found
