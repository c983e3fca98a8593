"""The barrier, the pattern lock and the leader's wait for its members, with real files in threads (no GPU)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
from filelock import FileLock, Timeout
from numa_ops import results
from numa_ops.specs import PatternRef, RunSpec
from numa_ops.worker import coordination

from tests.numa_ops.lanes import TINY_TEST, run_spec

LANES = ("gpu0-cpu0-mem0", "gpu1-cpu0-mem0")  # the first is the pattern's leader


def _spec(lane: str, wait_s: float) -> RunSpec:
    runs = {name: f"f.s.t.{name}" for name in LANES}
    return run_spec(runs[lane], lane, gpu_id=LANES.index(lane), test=TINY_TEST.model_copy(update={"timeout_s": 600}),
                    exclusive=True, barrier_timeout_s=wait_s, group=PatternRef("f.s.t.pattern", runs))


def _in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def _pattern_lock(outputs_dir) -> FileLock:
    (outputs_dir / ".locks").mkdir(exist_ok=True)
    return FileLock(str(outputs_dir / ".locks" / "patterns.lock"))


def test_members_wait_for_go_while_the_leader_waits_for_the_pattern_lock(tmp_path, outputs_dir):
    wait_s = 4.0
    other_pattern = _pattern_lock(outputs_dir)
    other_pattern.acquire()  # another pattern is measuring on this host
    member_spec, leader_spec = _spec(LANES[1], wait_s), _spec(LANES[0], wait_s)
    member, member_out = _in_thread(coordination.wait_at_barrier, tmp_path, member_spec, wait_s)
    time.sleep(2.0)  # the leader arrives half-way through the member's limit...
    lock: dict[str, Any] = {}
    leader, leader_out = _in_thread(coordination.wait_at_barrier, tmp_path, leader_spec, wait_s,
                                    on_all_arrived=lambda: lock.update(held=coordination.take_pattern_lock(wait_s)))
    time.sleep(2.5)  # ...and gets the lock within its own limit, after the member's first limit ran out
    other_pattern.release()
    member.join(30)
    leader.join(30)
    try:
        assert "error" not in member_out and "error" not in leader_out, (member_out, leader_out)
        assert member_out["value"]["leader"] == leader_out["value"]["leader"] == LANES[0]
        assert member_out["value"]["released_at"] >= leader_out["value"]["released_at"] - 0.01
    finally:
        if "held" in lock:
            lock["held"][0].release()


def test_a_member_that_failed_while_waiting_for_go_makes_the_others_give_up(tmp_path, outputs_dir):
    # the leader could not take the pattern lock: its failure ends the member's wait before the member's limit
    member_spec, leader_spec = _spec(LANES[1], 60.0), _spec(LANES[0], 60.0)
    results.write_json_atomic(tmp_path / "barriers" / "f.s.t.pattern" / LANES[0], {"arrived_at": time.time()})
    member, out = _in_thread(coordination.wait_at_barrier, tmp_path, member_spec, 60.0)
    time.sleep(0.3)
    results.write_json_atomic(results.record_path(tmp_path, leader_spec.run_id),
                              results.failed_record(leader_spec, "BarrierTimeout: pattern lock: held").to_json())
    member.join(30)
    assert not member.is_alive()
    assert isinstance(out.get("error"), coordination.BarrierTimeout)
    assert f"{LANES[0]}'s run of the pattern failed: BarrierTimeout: pattern lock" in str(out["error"])


def _group(arrived_at: float, released_at: float) -> dict[str, Any]:
    return {"id": "f.s.t.pattern", "lanes": list(LANES), "size": 2, "leader": LANES[0], "absent": [],
            "arrived_at": arrived_at, "released_at": released_at}


def test_the_leader_stops_waiting_for_a_member_whose_run_failed(tmp_path):
    leader_spec, member_spec = _spec(LANES[0], 60.0), _spec(LANES[1], 60.0)
    arrived_at = time.time()
    # the member gave up waiting for go (or was killed, and its supervisor recorded it): no .done mark
    results.write_json_atomic(results.record_path(tmp_path, member_spec.run_id),
                              results.failed_record(member_spec, "BarrierTimeout: lane did not say go").to_json())
    group = _group(arrived_at, time.time() + 0.5)  # the leader said go after the member's record was written
    t0 = time.monotonic()
    assert coordination.wait_done(tmp_path, leader_spec, group, 60.0) == [LANES[1]]
    assert time.monotonic() - t0 < 30  # not the 60 s cap, while holding the pattern lock


def test_the_leader_waits_for_a_member_despite_an_older_failure_until_its_done_mark(tmp_path):
    leader_spec, member_spec = _spec(LANES[0], 60.0), _spec(LANES[1], 60.0)
    record = results.record_path(tmp_path, member_spec.run_id)
    results.write_json_atomic(record, results.failed_record(member_spec, "an earlier attempt").to_json())
    os.utime(record, (1e9, 1e9))
    stale_done = tmp_path / "barriers" / "f.s.t.pattern" / f"{LANES[1]}.done"
    results.write_json_atomic(stale_done, {"at": 1e9})  # left by an earlier attempt
    os.utime(stale_done, (1e9, 1e9))
    now = time.time()
    waiter, out = _in_thread(coordination.wait_done, tmp_path, leader_spec, _group(now, now), 60.0)
    time.sleep(1.0)
    assert waiter.is_alive()  # neither the old failure nor the old mark ends the wait
    coordination.mark_done(tmp_path, member_spec)
    waiter.join(30)
    assert out == {"value": []}
    assert not stale_done.exists()


def test_a_pattern_lets_go_of_the_lock_soon_after_a_member_is_killed(tmp_path, outputs_dir):
    leader_spec, member_spec = _spec(LANES[0], 60.0), _spec(LANES[1], 60.0)
    leader = coordination.PatternRun(tmp_path, leader_spec, lambda *a, **k: None)
    member = coordination.PatternRun(tmp_path, member_spec, lambda *a, **k: None)
    measured, killed = threading.Event(), threading.Event()

    def lead() -> dict[str, Any] | None:  # as the worker does: the lock is taken and let go in one thread
        leader.before_timing()
        measured.set()
        killed.wait(30)
        return leader.finish()

    leading, out = _in_thread(lead)
    passing, member_out = _in_thread(member.before_timing)
    passing.join(30)
    assert member_out == {"value": None} and measured.wait(30)
    with pytest.raises(Timeout):
        _pattern_lock(outputs_dir).acquire(timeout=0)  # the leader holds it while the pattern measures
    # the member's worker is SIGKILLed mid-measurement: its supervisor records the run as failed
    results.write_json_atomic(results.record_path(tmp_path, member_spec.run_id),
                              results.failed_record(member_spec, "worker killed by signal SIGKILL").to_json())
    killed.set()
    leading.join(30)
    assert not leading.is_alive(), "the leader still waits for the killed member, holding the pattern lock"
    assert out["value"]["stragglers"] == [LANES[1]]
    _pattern_lock(outputs_dir).acquire(timeout=0)  # the pattern lock is free again
