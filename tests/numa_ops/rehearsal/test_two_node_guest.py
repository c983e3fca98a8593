"""The NUMA rehearsal for real: a two-node guest kernel under QEMU runs numa-lab's remote path.

Slow (minutes: software emulation). Where the emulator cannot start, root (CI) fails with the reason;
anyone else is skipped with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from numa_ops.rehearsal import vm
from numa_ops.rehearsal.guest import GUEST_JSON

pytestmark = pytest.mark.numa_vm


def _cannot_start(reason: str) -> None:
    if os.geteuid() == 0:
        pytest.fail(f"the two-node guest did not run: {reason}")
    pytest.skip(f"not root, and the two-node guest did not run: {reason}")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """One rehearsal (``python -m numa_ops.rehearsal``) into a private outputs folder, shared by the tests."""
    gaps = vm.missing()
    if gaps:
        _cannot_start("missing " + "; ".join(gaps))
    outputs = tmp_path_factory.mktemp("numa-rehearsal")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMA_LAB_")}
    done = subprocess.run([sys.executable, "-m", "numa_ops.rehearsal", "--outputs", str(outputs)],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode == 2:
        _cannot_start(done.stderr.strip())
    return done, outputs


def test_rehearsal_passes_and_says_what_ran(rehearsal):
    done, outputs = rehearsal
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("two-node rehearsal: 2 nodes (distance 21), 4 runs (3 local, 3 remote sides), "
                           "node-1 pages proven in 2, penalty views: 3 rows, report: "), last
    assert last.endswith("/report/index.html") and str(outputs) in last


def _guest(outputs: Path) -> dict:
    return json.loads((outputs / GUEST_JSON).read_text())


def _records(outputs: Path) -> list[dict]:
    folder = Path(_guest(outputs)["folder"])
    return [json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))]


def test_separate_process_records_carry_the_proofs(rehearsal):
    _, outputs = rehearsal
    records = [r for r in _records(outputs) if r["placement_mode"] != "paired"]
    assert len(records) == 2 and all(r["success"] for r in records)
    remote = [r for r in records if r["placement"] == "remote"]
    assert [r["placement_mode"] for r in remote] == ["process"]
    for r in records:
        pages = r["metrics"]["pool_pages"]
        assert pages["source"] == "numa_maps" and set(pages["by_node"]) == {str(r["pool_node"])}, r["run_id"]
        assert r["metrics"]["launch_cpu_node"] == r["cpu_node"], r["run_id"]
        assert r["numa_distance"] == (21 if r["placement"] == "remote" else 10)
    for r in remote:
        assert (r["pool_node"], r["cpu_node"], r["mem_node"]) == (1, 1, 1)
    folder = Path(_guest(outputs)["folder"])
    topo = json.loads((folder / "topology.json").read_text())
    assert [n["cpus"] for n in topo["nodes"]] == [[0], [1]] and topo["distances"] == {"0": [10, 21], "1": [21, 10]}


def test_paired_arms_are_where_they_were_put(rehearsal):
    """memory arms: the pool on node 0 then node 1, the launching thread home; thread arms: the other way round."""
    _, outputs = rehearsal
    paired = {r["paired"]: r for r in _records(outputs) if r["placement_mode"] == "paired"}
    assert sorted(paired) == ["memory", "thread"] and all(r["success"] for r in paired.values())
    for kind, rec in paired.items():
        arms = rec["metrics"]["paired"]["arms"]
        assert [a["placement"] for a in arms] == ["local", "remote"]
        for node, a in enumerate(arms):
            pool_node, thread_node = (node, 0) if kind == "memory" else (0, node)
            assert (a["pool_node"], a["thread_node"]) == (pool_node, thread_node), a
            assert set(a["pool_pages"]["by_node"]) == {str(pool_node)} and a["pool_pages"]["source"] == "numa_maps"
            assert a["launch_cpus"] and set(a["launch_cpus"]) == {thread_node}  # CPU n is node n's only CPU


def test_the_missing_node_was_refused_before_anything_ran(rehearsal):
    _, outputs = rehearsal
    refusal = _guest(outputs)["refusal"]
    assert refusal["rc"] == 2 and refusal["new_folders"] == []
    assert "NUMA node [2] not found; nodes on" in refusal["stderr"] and refusal["stderr"].endswith(": 0, 1")


def test_penalty_views_compare_local_and_remote(rehearsal):
    """Separate processes: one a side, so a penalty without an interval, said so; paired arms: an interval and
    an MDE from one worker."""
    _, outputs = rehearsal
    con = duckdb.connect(str(outputs / "numa_lab.duckdb"), read_only=True)
    rows = con.execute("SELECT placement_mode, local_processes, remote_processes, local_numa_distance, "
                       "remote_numa_distance, throughput_penalty, penalty_low, status FROM numa_penalty "
                       "ORDER BY placement_mode").fetchall()
    pairs = con.execute("SELECT kind, arm_node, reference_node, penalty_low, penalty_high, mde, verdict "
                        "FROM paired_penalty ORDER BY kind").fetchall()
    con.close()
    assert [r[:5] for r in rows] == [("process", 1, 1, 10, 21)]
    assert all(r[5] is not None and r[6] is None and "one process" in r[7] for r in rows), rows
    assert [r[:3] for r in pairs] == [("memory", 1, 0), ("thread", 1, 0)]
    for *_, low, high, mde, verdict in pairs:
        assert low is not None and high is not None and low <= high and mde is not None and verdict


def test_report_and_gate(rehearsal):
    _, outputs = rehearsal
    folder = Path(_guest(outputs)["folder"])
    page = (folder / "report" / "index.html").read_text()
    assert "NUMA penalty (remote vs local" in page and "MDE" in page
    verdict = json.loads((folder / "gate.json").read_text())
    assert verdict["planned"] == 4 and verdict["failure_rate"] == 0.0
