"""The launching thread's cores, on this host's real CPUs and real file locks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from numa_ops.worker.launch_thread import Disturbance, control_rate, pin_launching_thread


def _in_thread(fn):
    """Run ``fn`` in a fresh thread (affinity is per thread) and return its result."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=fn()))
    thread.start()
    thread.join()
    return out["result"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to choose between")
def test_the_thread_is_pinned_to_a_held_core_and_hops_only_among_them(tmp_path):
    def body():
        core = pin_launching_thread(tmp_path, candidates=4, hold=2)
        pinned = os.sched_getaffinity(0)
        hopped = [core.hop() for _ in range(3)]
        after = os.sched_getaffinity(0)
        summary, others = core.summary(), core.others()
        core.release()
        return core, pinned, hopped, after, summary, others

    core, pinned, hopped, after, summary, others = _in_thread(body)
    assert len(pinned) == 1 and pinned <= set(map(int, summary["candidates_ops_per_s"]))
    assert set(hopped) <= set(summary["held"]) and after == {hopped[-1]}
    assert len(summary["held"]) == 2 and all(r > 0 for r in summary["candidates_ops_per_s"].values())
    rest = set(os.sched_getaffinity(0)) - set(summary["held"])
    assert others == (rest or set(os.sched_getaffinity(0)))  # helper processes stay off the held cores
    assert core.locks == {}  # released


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to choose between")
def test_cores_held_by_another_worker_are_left_to_it(tmp_path):
    # another process (a worker of another lane) holds every core but one
    allowed = sorted(os.sched_getaffinity(0))
    hold = ",".join(str(c) for c in allowed[1:])
    script = (
        "import sys, time; from filelock import FileLock\n"
        f"locks = [FileLock('{tmp_path}/cpu' + c + '.lock') for c in '{hold}'.split(',')]\n"
        "[lock.acquire() for lock in locks]; print('held', flush=True); sys.stdin.read()\n"
    )
    other = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        core = _in_thread(lambda: pin_launching_thread(tmp_path, candidates=4, hold=2))
        assert core.cpu == allowed[0] and core.held == [allowed[0]]
        assert sorted(core.taken_by_others) == allowed[1:]
        core.release()
    finally:
        other.communicate("")


def test_control_rate_and_disturbance_counters_read_this_thread():
    assert control_rate(2, 50) > 0
    before = Disturbance.now(None)
    sum(range(100_000))
    delta = before.since()
    assert delta["involuntary_switches"] >= 0 and delta["steal_ms"] is None
    assert delta["migrations"] is None or delta["migrations"] >= 0
