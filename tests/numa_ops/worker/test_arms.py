"""A paired run's arms, on this host's real CPUs: the thread arms' launching cores, one node each."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

import pytest
from numa_ops.worker.arms import thread_arm_cores

from tests.numa_ops.fake_sysfs import make_sysfs


@pytest.mark.skipif(not {0, 1} <= os.sched_getaffinity(0), reason="needs CPUs 0 and 1 to put one node on each")
def test_thread_arms_get_a_core_on_each_node_whichever_is_pinned_first(tmp_path):
    """Pinning for node 0 narrows the thread's own affinity to node 0's core; node 1's core must still be found
    (a two-node kernel showed it was not)."""
    sysfs = make_sysfs(tmp_path / "sys", {0: "0", 1: "1"}, {})
    specs = [SimpleNamespace(arms=[SimpleNamespace(node=0), SimpleNamespace(node=1)])]
    out: dict = {}

    def body() -> None:  # affinity is per thread: this test's thread, not pytest's
        try:
            out["cores"] = thread_arm_cores(specs, sysfs)
            out["affinity"] = os.sched_getaffinity(0)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            out["error"] = exc

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert "error" not in out, out.get("error")
    assert {node: core.cpu for node, core in out["cores"].items()} == {0: 0, 1: 1}
    assert out["affinity"] == {1}  # the last node pinned; the measuring loop hops to each arm's core in turn
