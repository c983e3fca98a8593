"""A study's hardware as a role, resolved on fake hosts (sysfs trees): what each host can run of phases 1, 2 and 6
as defined, what it skips and why; an ad-hoc trigger naming what the host lacks is still refused."""

from __future__ import annotations

import json

import pytest
from numa_ops import results
from numa_ops.phases import load_phases
from numa_ops.plan import PlanError, build_plan
from numa_ops.roles import resolve, resolve_studies
from numa_ops.topology import PlacementError, Topology, discover

from tests.numa_ops.fake_sysfs import make_sysfs

P1, P2, P6 = "phase1_framework_validation", "phase2_numa_locality", "phase6_production"
R = 3  # numa_study's test.repeats


def _host(tmp_path, nodes: dict[int, str], gpus: dict[str, int], distances: dict[int, str] | None = None) -> Topology:
    return discover(make_sysfs(tmp_path / "sys", nodes, gpus, distances), use_nvml=False)


@pytest.fixture
def one_gpu_one_node(tmp_path) -> Topology:
    """The lent GPU VMs: one node, one GPU whose sysfs numa_node is -1."""
    return _host(tmp_path, {0: "0-15"}, {"0000:1b:00.0": -1})


@pytest.fixture
def four_gpus_two_nodes(tmp_path) -> Topology:
    """Two sockets, GPUs 0 and 1 on node 0, GPUs 2 and 3 on node 1."""
    gpus = {"0000:1b:00.0": 0, "0000:3b:00.0": 0, "0000:8b:00.0": 1, "0000:af:00.0": 1}
    return _host(tmp_path, {0: "0-7", 1: "8-15"}, gpus, {0: "10 21", 1: "21 10"})


@pytest.fixture
def no_gpu_one_node(tmp_path) -> Topology:
    """This CPU machine's kind."""
    return _host(tmp_path, {0: "0-1"}, {})


def _skips(resolved) -> dict[str, str]:
    return {s.study: s.reason for s in resolved.skipped}


def test_a_one_gpu_one_node_host_runs_what_it_can_and_says_what_it_cannot(one_gpu_one_node):
    phases = load_phases()
    p1, p2, p6 = (resolve_studies(phases[p], one_gpu_one_node) for p in (P1, P2, P6))
    assert set(p1.configs) == {"quick_test", "multi_gpu_validation", "baseline_single_gpu"} and not p1.skipped
    assert p1.roles["multi_gpu_validation"]["overrides"] == ["experiment.hardware.gpu_ids=[0]"]
    assert set(p2.configs) == {"numa_study", "extended_sampling"}
    one_node = f"{one_gpu_one_node.host} has one NUMA node (node 0): no remote placement exists"
    assert _skips(p2) == {"key_gpu_numa_pairs": one_node, "paired_dma": one_node, "paired_cpu_side": one_node}
    assert set(p6.configs) == {"high_throughput", "stability"}
    assert _skips(p6) == {"multi_gpu_patterns": f"{one_gpu_one_node.host} has 1 GPU: a pair needs two"}
    lanes = build_plan("f", p6.configs, one_gpu_one_node)
    assert {lane.gpu_id for lane in lanes} == {0} and not any(r.group for lane in lanes for r in lane.runs)


def test_a_host_without_gpu_skips_every_gpu_role(no_gpu_one_node):
    phases = load_phases()
    skipped = {s.study: s.line() for p in (P1, P2, P6) for s in resolve_studies(phases[p], no_gpu_one_node).skipped}
    host = no_gpu_one_node.host
    assert skipped == {
        "multi_gpu_validation": f"study multi_gpu_validation (every GPU) skipped: {host} has no GPU: the phase's "
                                "other studies run on the CPU",
        "key_gpu_numa_pairs": "study key_gpu_numa_pairs (each GPU with its own node and its farthest node) skipped: "
                              f"{host} has no GPU: on the CPU no node is remote",
        **{study: f"study {study} (each GPU's own node paired with its farthest node in one worker) skipped: "
                  f"{host} has no GPU: on the CPU no node is remote" for study in ("paired_dma", "paired_cpu_side")},
        "multi_gpu_patterns": "study multi_gpu_patterns (every GPU alone, then the first GPU paired with each other) "
                              f"skipped: {host} has no GPU: a pair needs two",
    }


def test_two_nodes_and_four_gpus_give_every_role(four_gpus_two_nodes):
    phases = load_phases()
    p1, p2, p6 = (resolve_studies(phases[p], four_gpus_two_nodes) for p in (P1, P2, P6))
    assert not (p1.skipped or p2.skipped or p6.skipped)
    assert {lane.gpu_id
            for lane in build_plan("f", {"v": p1.configs["multi_gpu_validation"]}, four_gpus_two_nodes)} == {
        0, 1, 2, 3}
    pairs = build_plan("f", {"k": p2.configs["key_gpu_numa_pairs"]}, four_gpus_two_nodes)
    assert {(lane.gpu_id, lane.cpu_node, lane.runs[0].placement) for lane in pairs} == {
        (0, 0, "local"), (0, 1, "remote"), (1, 0, "local"), (1, 1, "remote"),
        (2, 1, "local"), (2, 0, "remote"), (3, 1, "local"), (3, 0, "remote")}
    assert sum(len(lane.runs) for lane in pairs) == R * 4 * 2 * 5
    patterns = build_plan("f", {"m": p6.configs["multi_gpu_patterns"]}, four_gpus_two_nodes)
    groups = {frozenset(r.group.runs) for lane in patterns for r in lane.runs if r.group}
    assert {frozenset(name.split("-")[0] for name in g) for g in groups} == {
        frozenset({"gpu0", "gpu1"}), frozenset({"gpu0", "gpu2"}), frozenset({"gpu0", "gpu3"})}
    assert p6.roles["multi_gpu_patterns"]["overrides"] == [
        'experiment.hardware.gpu_ids="[0],[1],[2],[3],[0,1],[0,2],[0,3]"']


def test_a_gpu_that_does_not_report_its_node_on_a_two_node_host_has_no_farthest(tmp_path):
    topo = _host(tmp_path, {0: "0-7", 1: "8-15"}, {"0000:1b:00.0": 0, "0000:3b:00.0": -1}, {0: "10 21", 1: "21 10"})
    (skipped,) = resolve_studies(load_phases()[P2], topo, ["key_gpu_numa_pairs"]).skipped
    assert skipped.reason == (f"GPU [1] on {topo.host} does not report its NUMA node, so its own node and its "
                              "farthest are unknown")


@pytest.mark.parametrize(("extra", "message"), [
    pytest.param(["experiment.hardware.gpu_ids=[0,3]"], r"GPU \[3\] not found; GPUs on .*: 0$", id="absent-gpu"),
    pytest.param(["experiment.hardware.numa_nodes=[0,2]"], r"NUMA node \[2\] not found; nodes on .*: 0$",
                 id="absent-node"),
])
def test_a_trigger_naming_what_the_host_lacks_is_refused_not_skipped(one_gpu_one_node, extra, message):
    """The trigger's own hardware replaces the role, and the planner refuses what the host does not have."""
    resolved = resolve_studies(load_phases()[P2], one_gpu_one_node, ["key_gpu_numa_pairs"], extra)
    assert not resolved.skipped and not resolved.roles
    with pytest.raises(PlacementError, match=message):
        build_plan("f", resolved.configs, one_gpu_one_node)


def test_an_ad_hoc_experiment_has_no_roles(one_gpu_one_node):
    resolved = resolve_studies(load_phases()[P6], one_gpu_one_node, None, ["experiment.test.num_samples=8"],
                               "quick_test")
    assert set(resolved.configs) == {"adhoc"} and not resolved.skipped


def test_only_skipped_studies_chosen_is_refused_with_every_reason(one_gpu_one_node):
    resolved = resolve_studies(load_phases()[P6], one_gpu_one_node, ["multi_gpu_patterns"])
    with pytest.raises(PlanError, match=r"no chosen study can run on .*: study multi_gpu_patterns .* a pair needs two"):
        resolved.runnable(one_gpu_one_node.host)


def test_an_unknown_role_is_refused_naming_the_roles(one_gpu_one_node):
    with pytest.raises(ValueError, match="unknown role 'every_node'; roles: every_gpu"):
        resolve("every_node", one_gpu_one_node)  # type: ignore[arg-type]


def test_the_summary_keeps_the_plans_skipped_studies(outputs_dir, one_gpu_one_node):
    from numa_ops.pipeline import write_plan

    resolved = resolve_studies(load_phases()[P6], one_gpu_one_node, None, ["experiment.test.num_samples=8"])
    folder_path, _ = write_plan("p6", resolved.configs, one_gpu_one_node, {"phase": P6, **resolved.plan_fields()})
    plan = json.loads((folder_path / "plan.json").read_text())
    expected = [{"study": "multi_gpu_patterns", "role": "gpus_alone_then_pairs",
                 "reason": f"{one_gpu_one_node.host} has 1 GPU: a pair needs two"}]
    assert plan["skipped_studies"] == expected
    assert results.finalize(folder_path)["skipped_studies"] == expected
    assert json.loads((folder_path / "experiment_summary.json").read_text())["skipped_studies"] == expected
