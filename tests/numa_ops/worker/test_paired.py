"""Paired runs: the ABBA order, the control adjustment, and the real worker measuring two arms on the CPU."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from numa_ops.specs import runs_to_json
from numa_ops.worker.paired import block_means, block_order, comparisons, control_slope

from tests.numa_ops.lanes import tiny_lane

PAIRED = ("experiment.hardware.placement=paired", "experiment.hardware.paired_arms=[0,0]",
          "experiment.test.paired_min_blocks=3", "experiment.test.paired_max_blocks=4",
          "experiment.test.paired_max_s=60",
          "experiment.test.min_trial_s=0.01", "experiment.vit_configs=[{name: tiny, patch_size: 8, depth: 1, heads: 2, "
          "dim: 32, mlp_dim: 64, num_classes: 10}]")


@pytest.mark.parametrize(
    ("arms", "block", "order"),
    [(2, 0, [0, 1, 1, 0]), (2, 1, [1, 0, 0, 1]), (3, 0, [0, 1, 2, 2, 1, 0]), (3, 1, [2, 1, 0, 0, 1, 2])],
    ids=["ABBA", "BAAB", "three-arms-forward", "three-arms-backward"],
)
def test_block_order(arms, block, order):
    assert block_order(arms, block) == order
    assert sorted(order) == sorted(list(range(arms)) * 2)  # every arm twice a block


def test_a_linear_drift_cancels_in_abba_blocks():
    """Trials drifting 1% a trial: ABBA block differences of two identical arms are exactly 0."""
    logs: list[list[float]] = [[], []]
    t = 0
    for block in range(6):
        for arm in block_order(2, block):
            logs[arm].append(0.01 * t)
            t += 1
    (only,) = comparisons(logs, None, per_block=2)
    assert only["block_diffs"] == pytest.approx([0.0] * 6, abs=1e-12)
    assert only["adjusted"] is None


def test_control_adjustment_recovers_a_planted_difference():
    """A 5% slower arm on a host whose CPU speed flips between two states that the control sees."""
    rng = np.random.default_rng(7)
    blocks, logs, controls = 30, [[], []], [[], []]
    for block in range(blocks):
        for arm in block_order(2, block):
            state = math.log(rng.choice([3e5, 7e5]))
            controls[arm].append(state + rng.normal(0, 0.01))
            logs[arm].append(0.9 * state + (math.log(0.95) if arm else 0.0) + rng.normal(0, 0.01))
    assert control_slope(logs, controls) == pytest.approx(0.9, abs=0.05)
    (cmp,) = comparisons(logs, controls, per_block=2)
    assert cmp["blocks"] == blocks == len(block_means(logs[0], 2))
    adjusted = cmp["adjusted"]
    assert adjusted["low"] <= 0.95 <= adjusted["high"]
    assert adjusted["half_width"] < cmp["half_width"] / 3  # the control explains the two states
    assert adjusted["verdict"] == "measured" and adjusted["df"] == blocks - 2


def _measure(lane, folder_path):
    runs = folder_path / "paired.json"
    runs.write_text(json.dumps(runs_to_json(lane.runs)))
    proc = subprocess.run([sys.executable, "-m", "numa_ops.worker", "--runs", str(runs), "--folder-path",
                           str(folder_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (spec,) = lane.runs
    return json.loads((folder_path / "runs" / f"{spec.run_id}.json").read_text())


@pytest.mark.parametrize("kind", ["memory", "thread", "process"])
def test_worker_measures_both_arms_in_abba_blocks(configs_dir, outputs_dir, kind):
    if kind == "process" and shutil.which("numactl") is None:
        pytest.skip("needs numactl (a whole-process arm's partner is bound by it); ./numa-lab test installs it as root")
    folder_path, lane = tiny_lane(*PAIRED, f"experiment.hardware.paired={kind}")
    assert lane.name == f"cpu-cpu0-mem0-paired-{kind}"
    rec = _measure(lane, folder_path)
    assert rec["success"], rec.get("error")
    assert rec["placement_mode"] == "paired" and rec["paired"] == kind
    assert [(a["node"], a["pinned"]) for a in rec["arms"]] == [(0, False), (0, False)]  # no pinning on the CPU
    paired = rec["metrics"]["paired"]
    assert paired["kind"] == kind and paired["design"] == "ABBA"
    assert paired["stop_reason"] in ("target", "max_blocks", "time_cap")
    arms = paired["arms"]
    assert [a["node"] for a in arms] == [0, 0]
    blocks = paired["blocks"]
    assert 3 <= blocks <= 4 if paired["stop_reason"] != "time_cap" else blocks >= 1
    for arm in arms:  # two trials an arm a block, each with its control
        assert len(arm["trial_samples_per_s"]) == len(arm["cpu_control"]) == 2 * blocks
    (cmp,) = paired["comparisons"]
    assert cmp["blocks"] == len(cmp["block_diffs"]) == blocks
    logs = [[math.log(x) for x in a["trial_samples_per_s"]] for a in arms]
    assert cmp["block_diffs"] == pytest.approx(
        [b - a for a, b in zip(block_means(logs[0], 2), block_means(logs[1], 2), strict=True)])
    assert rec["metrics"]["trial_samples_per_s"]["serial"] == arms[0]["trial_samples_per_s"]  # the reference's
    if kind == "memory":
        assert cmp["adjusted"] is not None and "slope" in cmp["adjusted"]
        if arms[0]["pool_pages"]["source"] == "numa_maps":  # each arm's own pool, bound to its node
            assert all(a["pool_pages"]["policy"] == "bind:0" for a in arms)
    else:
        assert cmp["adjusted"] is None  # a thread or process arm moves the control: never adjusted on it
        node0 = set(os.sched_getaffinity(0))
        assert all(set(a["launch_cpus"]) <= node0 for a in arms)
    if kind == "process":  # the partner's own metrics, measured in its own process
        assert arms[1]["samples_per_s"] == pytest.approx(float(np.median(arms[1]["trial_samples_per_s"])))
