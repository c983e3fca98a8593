"""The rehearsal's proofs, on records and numactl output shaped as the two-node guest writes them."""

from __future__ import annotations

import pytest
from numa_ops.record import RunRecord
from numa_ops.rehearsal.proofs import (
    Rehearsal,
    check_penalties,
    check_record,
    check_refusal,
    check_topology,
    parse_numactl,
)

NUMACTL = """available: 2 nodes (0-1)
node 0 cpus: 0
node 0 size: 2962 MB
node 0 free: 2801 MB
node 1 cpus: 1
node 1 size: 3019 MB
node 1 free: 2950 MB
node distances:
node   0   1
  0:  10  21
  1:  21  10
"""
SNAPSHOT = {"nodes": [{"id": 0, "cpus": [0], "mem_total_mb": 2962}, {"id": 1, "cpus": [1], "mem_total_mb": 3019}],
            "distances": {"0": [10, 21], "1": [21, 10]}}


def test_parse_numactl():
    parsed = parse_numactl(NUMACTL)
    assert (parsed.cpus, parsed.distances) == ({0: [0], 1: [1]}, {0: [10, 21], 1: [21, 10]})


@pytest.mark.parametrize(
    ("snapshot", "problem"),
    [
        pytest.param(SNAPSHOT, None, id="the-kernels"),
        pytest.param({**SNAPSHOT, "nodes": SNAPSHOT["nodes"][:1]}, "topology.json's nodes", id="one-node-snapshot"),
        pytest.param({**SNAPSHOT, "distances": {"0": [10, 20], "1": [20, 10]}}, "topology.json's distances",
                     id="other-distances"),
    ],
)
def test_the_snapshot_must_be_the_kernels(snapshot, problem):
    found = Rehearsal()
    check_topology(found, NUMACTL, snapshot)
    assert (found.nodes, found.distance) == (2, 21)
    assert (problem is None) == (not found.problems)
    assert problem is None or problem in found.problems[0]


def record(placement: str, cpu_node: int, pool_node: int, by_node: dict[str, int], launch_node: int) -> dict:
    return {"run_id": f"{placement}-{pool_node}", "success": True, "placement": placement, "cpu_node": cpu_node,
            "pool_node": pool_node,
            "metrics": {"launch_cpu": launch_node, "launch_cpu_node": launch_node,
                        "pool_pages": {"source": "numa_maps", "by_node": by_node, "intended_node": pool_node}}}


CPU_NODES = {0: 0, 1: 1}


@pytest.mark.parametrize(
    ("rec", "proven", "problem"),
    [
        pytest.param(record("remote", 1, 1, {"1": 1024}, 1), 1, None, id="process-remote"),
        pytest.param(record("remote", 0, 1, {"1": 1024}, 0), 1, None, id="pool-remote"),
        pytest.param(record("local", 0, 0, {"0": 1024}, 0), 0, None, id="local"),
        pytest.param(record("remote", 0, 1, {"0": 10, "1": 1014}, 0), 0, "not all on node 1", id="pages-split"),
        pytest.param(record("remote", 1, 1, {"1": 1024}, 0), 1, "not on its bound node 1", id="thread-elsewhere"),
        pytest.param({**record("remote", 1, 1, {"1": 1}, 1), "metrics": {"launch_cpu_node": 1, "pool_pages": None}},
                     0, "not all on node 1", id="no-proof"),
        pytest.param(record("cpu", 0, 0, {"0": 1}, 0), 0, "neither local nor remote", id="unplaced"),
    ],
)
def test_a_record_proves_its_placement(rec, proven, problem):
    found = Rehearsal()
    check_record(found, RunRecord.model_validate(rec), CPU_NODES)
    assert found.remote_pages_proven == proven
    assert (problem is None) == (not found.problems), found.problems
    assert problem is None or problem in found.problems[0]


def arm(name: str, placement: str, pool_node: int, thread_node: int, by_node: dict[str, int], cpus: list) -> dict:
    return {"name": name, "placement": placement, "pool_node": pool_node, "thread_node": thread_node,
            "launch_cpus": cpus, "pool_pages": {"source": "numa_maps", "by_node": by_node}}


def paired_record(kind: str, *arms: dict) -> dict:
    return {"run_id": f"paired-{kind}", "success": True, "placement": "paired", "placement_mode": "paired",
            "paired": kind, "cpu_node": 0, "pool_node": 0, "metrics": {"paired": {"arms": list(arms)}}}


LOCAL_ARM = arm("node0", "local", 0, 0, {"0": 64}, [0, 0, 0])


@pytest.mark.parametrize(
    ("rec", "sides", "proven", "problem"),
    [
        pytest.param(paired_record("memory", LOCAL_ARM, arm("node1", "remote", 1, 0, {"1": 64}, [0, 0])), (1, 1), 1,
                     None, id="memory-arms"),
        pytest.param(paired_record("thread", LOCAL_ARM, arm("node1", "remote", 0, 1, {"0": 64}, [1, 1])), (1, 1), 0,
                     None, id="thread-arms"),
        pytest.param(paired_record("thread", LOCAL_ARM, arm("node1", "remote", 0, 1, {"0": 64}, [1, 0])), (1, 1), 0,
                     "not all on its thread node 1", id="thread-arm-strayed"),
        pytest.param(paired_record("memory", LOCAL_ARM, arm("node1", "remote", 1, 0, {"0": 64}, [0])), (1, 1), 0,
                     "not all on node 1", id="memory-arm-pages-local"),
        pytest.param(paired_record("memory", LOCAL_ARM, arm("node1", "remote", 1, 0, {"1": 64}, [])), (1, 1), 1,
                     "launching CPUs []", id="no-trials"),
    ],
)
def test_a_paired_run_proves_each_arm(rec, sides, proven, problem):
    found = Rehearsal()
    check_record(found, RunRecord.model_validate(rec), CPU_NODES)
    assert (found.runs, found.local, found.remote, found.remote_pages_proven) == (1, *sides, proven)
    assert (problem is None) == (not found.problems), found.problems
    assert problem is None or problem in found.problems[0]


def penalty(mode: str, local: int = 1, remote: int = 1, penalty_: float | None = 0.01) -> dict:
    return {"placement_mode": mode, "local_processes": local, "remote_processes": remote,
            "throughput_penalty": penalty_, "status": "one process a side"}


def paired(kind: str, node: int = 1, mde: float | None = 0.2) -> dict:
    return {"kind": kind, "arm_node": node, "mde": mde, "penalty_low": None if mde is None else -0.1,
            "penalty_high": 0.1}


BOTH_PAIRED = [paired("memory"), paired("thread")]


@pytest.mark.parametrize(
    ("rows", "pairs", "problem"),
    [
        pytest.param([penalty("process")], BOTH_PAIRED, None, id="process-and-both-kinds"),
        pytest.param([], BOTH_PAIRED, "not one for process", id="process-missing"),
        pytest.param([penalty("process"), penalty("pool")], BOTH_PAIRED, "not one for process", id="a-pool-row-too"),
        pytest.param([penalty("process", remote=0, penalty_=None)], BOTH_PAIRED, "no penalty", id="no-remote-process"),
        pytest.param([penalty("process")], BOTH_PAIRED[:1], "not one each for memory and thread", id="thread-missing"),
        pytest.param([penalty("process")], [paired("memory", mde=None), paired("thread")], "MDE None",
                     id="paired-without-interval"),
        pytest.param([penalty("process")], [paired("memory", node=0), paired("thread")], "arm on node 0",
                     id="paired-arm-not-remote"),
    ],
)
def test_penalty_rows(rows, pairs, problem):
    found = Rehearsal()
    check_penalties(found, rows, pairs)
    assert found.penalty_rows == len(rows) + len(pairs)
    assert (problem is None) == (not found.problems), found.problems
    assert problem is None or problem in found.problems[0]


@pytest.mark.parametrize(
    ("refusal", "problem"),
    [
        pytest.param({"rc": 2, "stderr": "error: experiment.hardware.numa_nodes: NUMA node [2] not found; nodes on "
                      "virtme-ng: 0, 1", "new_folders": []}, None, id="refused"),
        pytest.param({"rc": 0, "stderr": "", "new_folders": ["x"]}, "was not refused", id="ran"),
        pytest.param({"rc": 2, "stderr": "error: NUMA node [2] not found", "new_folders": ["x"]}, "made run folders",
                     id="left-a-folder"),
        pytest.param(None, "not tried", id="not-tried"),
    ],
)
def test_a_missing_node_is_refused(refusal, problem):
    found = Rehearsal()
    check_refusal(found, refusal)
    assert (problem is None) == (not found.problems)
    assert problem is None or problem in found.problems[0]


def test_the_line():
    found = Rehearsal(nodes=2, distance=21, runs=4, local=3, remote=3, remote_pages_proven=2, penalty_rows=3,
                      report="/o/r/index.html")
    assert found.line() == ("two-node rehearsal: 2 nodes (distance 21), 4 runs (3 local, 3 remote sides), node-1 "
                            "pages proven in 2, penalty views: 3 rows, report: /o/r/index.html")


def test_a_failing_host_step_is_a_problem_not_a_crash(tmp_path, monkeypatch):
    """The host's load, report or gate failing is said as the rehearsal's first problem; nothing is raised."""
    import json as _json

    from numa_ops.rehearsal import __main__ as rehearsal_main
    from numa_ops.rehearsal import finish

    folder = tmp_path / "quick_test_20261205T000000_abcdef"
    folder.mkdir()
    (folder / "plan.json").write_text("{}")
    (tmp_path / "guest.json").write_text(_json.dumps({"folder": str(folder)}))

    def broken(outputs, run_folder):
        raise OSError("disk full")

    monkeypatch.setattr(finish, "finish", broken)
    said = rehearsal_main.finish_guest_folder(tmp_path)
    assert said == "loading, reporting or gating the guest's records failed: OSError: disk full"
    assert rehearsal_main.finish_guest_folder(tmp_path / "nothing-here") is None
