"""The guest's steps that need no second node: the refused placement, through the real command line."""

from __future__ import annotations

from numa_ops.rehearsal import guest


def test_a_node_the_host_lacks_is_refused_and_nothing_is_made(outputs_dir):
    refusal = guest.refusal(outputs_dir)
    assert refusal["rc"] == 2
    assert "experiment.hardware.numa_nodes: NUMA node [2] not found; nodes on " in refusal["stderr"]
    assert refusal["new_folders"] == [] and not any(outputs_dir.iterdir())
