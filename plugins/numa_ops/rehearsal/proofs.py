"""What the rehearsal proved, read back from what the guest wrote: its records, its DuckDB file, its report.

Nothing is taken from the plan's intent: a remote run counts as proven only where its record's numa_maps
count puts its pages on the remote node, and its launching thread ran on the node the worker was bound to.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        """The one line that says what ran."""
        return (f"two-node rehearsal: {self.nodes} nodes (distance {self.distance}), {self.runs} runs ({self.local} "
                f"local, {self.remote} remote), node-{REMOTE_NODE} pages proven in {self.remote_pages_proven}, "
                f"penalty views: {self.penalty_rows} rows, report: {self.report}")


def parse_numactl(text: str) -> dict[str, Any]:
    """``numactl --hardware`` as {"cpus": {node: [cpu, ...]}, "distances": {node: [d, ...]}}."""
    cpus = {int(n): [int(c) for c in rest.split()] for n, rest in re.findall(r"^node (\d+) cpus:(.*)$", text, re.M)}
    distances: dict[int, list[int]] = {}
    table = text.split("node distances:", 1)[1] if "node distances:" in text else ""
    for line in table.strip().splitlines()[1:]:
        head, _, rest = line.partition(":")
        if head.strip().isdigit():
            distances[int(head)] = [int(x) for x in rest.split()]
    return {"cpus": cpus, "distances": distances}


def check_topology(found: Rehearsal, numactl_text: str, snapshot: dict[str, Any]) -> None:
    """The run folder's topology snapshot must be the guest kernel's, as numactl reads it: two nodes."""
    kernel = parse_numactl(numactl_text)
    found.nodes = len(kernel["cpus"])
    found.distance = (kernel["distances"].get(0) or [None, None])[1] if found.nodes > 1 else None
    if found.nodes != 2:
        found.problems.append(f"the guest has {found.nodes} NUMA node(s), not 2:\n{numactl_text}")
    taken = {n["id"]: n["cpus"] for n in snapshot.get("nodes", [])}
    if taken != kernel["cpus"]:
        found.problems.append(f"topology.json's nodes {taken} are not the kernel's {kernel['cpus']}")
    distances = {int(k): v for k, v in snapshot.get("distances", {}).items()}
    if distances != kernel["distances"]:
        found.problems.append(f"topology.json's distances {distances} are not the kernel's {kernel['distances']}")


def _pages_on(proof: dict[str, Any] | None, node: int) -> bool:
    """Whether a numa_maps proof puts every page of the buffer on ``node``."""
    by_node = (proof or {}).get("by_node") or {}
    return (proof or {}).get("source") == "numa_maps" and bool(by_node) and set(by_node) == {str(node)}


def check_record(found: Rehearsal, rec: dict[str, Any]) -> None:
    """One run: it succeeded, its launching thread ran on its bound node, its pool's pages are where planned."""
    run = rec.get("run_id")
    found.runs += 1
    if not rec.get("success"):
        found.problems.append(f"{run} failed: {rec.get('error')}")
        return
    metrics = rec.get("metrics") or {}
    placement, pool_node = rec.get("placement"), rec.get("pool_node")
    found.local += placement == "local"
    found.remote += placement == "remote"
    if placement not in ("local", "remote"):
        found.problems.append(f"{run}: placement {placement!r}, neither local nor remote")
    if metrics.get("launch_cpu_node") != rec.get("cpu_node"):
        found.problems.append(f"{run}: launching thread on CPU {metrics.get('launch_cpu')} (node "
                              f"{metrics.get('launch_cpu_node')}), not on its bound node {rec.get('cpu_node')}")
    if not _pages_on(metrics.get("pool_pages"), pool_node):
        found.problems.append(f"{run}: its pool's pages are not all on node {pool_node}: {metrics.get('pool_pages')}")
    elif placement == "remote" and pool_node == REMOTE_NODE:
        found.remote_pages_proven += 1


def check_penalties(found: Rehearsal, rows: list[dict[str, Any]]) -> None:
    """``numa_penalty``: one row per placement mode, each with a local and a remote side of two processes,
    an interval and an MDE."""
    found.penalty_rows = len(rows)
    modes = sorted(r["placement_mode"] for r in rows)
    if modes != ["pool", "process"]:
        found.problems.append(f"numa_penalty has rows for placement modes {modes}, not one each for process and pool")
    for r in rows:
        if r["local_processes"] < 2 or r["remote_processes"] < 2 or r["mde"] is None or r["penalty_low"] is None:
            found.problems.append(f"numa_penalty ({r['placement_mode']}): {r['local_processes']} local and "
                                  f"{r['remote_processes']} remote processes, MDE {r['mde']}: no interval ({r['status']})")


def check_refusal(found: Rehearsal, refusal: dict[str, Any] | None) -> None:
    """A node the guest lacks: refused by the planner (exit status 2, its message), no run folder made."""
    if not refusal:
        found.problems.append("the refused placement was not tried")
        return
    said = refusal.get("stderr") or ""
    if refusal.get("rc") != 2 or "NUMA node [2] not found" not in said:
        found.problems.append(f"a placement on node 2 was not refused by the planner: rc {refusal.get('rc')}, {said!r}")
    if refusal.get("new_folders"):
        found.problems.append(f"the refused placement still made run folders: {refusal['new_folders']}")


def penalty_rows(database: Path, folder: str) -> list[dict[str, Any]]:
    """The rehearsal folder's ``numa_penalty`` rows, from its DuckDB file (read-only)."""
    import duckdb

    from numa_ops.db.views import VIEWS, scoped

    con = duckdb.connect(str(database), read_only=True)
    try:
        cur = con.execute(scoped(VIEWS["numa_penalty"], "folder = ?"), [folder])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def judge(outputs: Path, guest_json: str = "guest.json") -> Rehearsal:
    """Every proof over what the guest left in ``outputs``."""
    from numa_ops import results
    from numa_ops.db.connection import db_path

    found = Rehearsal()
    path = outputs / guest_json
    if not path.is_file():
        found.problems.append(f"the guest wrote no {path} (see its output above)")
        return found
    guest = json.loads(path.read_text())
    check_refusal(found, guest.get("refusal"))
    if guest.get("run_rc") != 0:
        found.problems.append(f"python -m numa_ops run exited {guest.get('run_rc')}")
    folder = Path(guest["folder"]) if guest.get("folder") else None
    if folder is None or not (folder / "plan.json").is_file():
        found.problems.append("the run made no run folder")
        return found
    topo_file = folder / "topology.json"
    check_topology(found, guest.get("numactl_hardware") or "", json.loads(topo_file.read_text()) if topo_file.is_file() else {})
    planned = json.loads((folder / "plan.json").read_text()).get("runs")
    for rec in results.collect(folder):
        check_record(found, rec)
    if found.runs != planned:
        found.problems.append(f"{found.runs} records for {planned} planned runs")
    database = db_path(outputs)
    if database.is_file():
        check_penalties(found, penalty_rows(database, folder.name))
    else:
        found.problems.append(f"no DuckDB file at {database}")
    index = folder / "report" / "index.html"
    if index.is_file() and PENALTY_HEADING in index.read_text():
        found.report = str(index)
    else:
        found.problems.append(f"the report {index} is missing or has no NUMA penalty section")
    gate = json.loads((folder / "gate.json").read_text()) if (folder / "gate.json").is_file() else None
    if gate is None:
        found.problems.append("the gate wrote no verdict (gate.json)")
    else:
        found.gate = gate.get("sentence") or gate.get("summary")
    return found
