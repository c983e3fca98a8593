"""The lane supervisor with real worker processes (and real numactl where installed)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import pytest
from numa_ops import results
from numa_ops.supervise import LaneSupervisor
from numa_ops.topology import parse_cpulist

from tests.numa_ops.lanes import tiny_lane, with_test


def _record(folder_path, run_id):
    return json.loads((folder_path / "runs" / f"{run_id}.json").read_text())


def _wait_for_start(folder_path, sup, n=1, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = folder_path / "experiment.log"
        if sup._worker is not None and log.exists() and log.read_text().count('"event": "start"') >= n:
            return sup._worker
        time.sleep(0.1)
    raise AssertionError("the worker never started a run")


def test_lane_runs_and_a_retry_measures_nothing_again(configs_dir, outputs_dir):
    folder_path, lane = tiny_lane()
    lines = []
    outcome = LaneSupervisor(lane, folder_path, log=lines.append).run()
    assert len(outcome.succeeded) == 2 and not outcome.failed and outcome.workers_started == 1
    assert any("run 2/2 ok" in line for line in lines)
    before = {r.run_id: _record(folder_path, r.run_id)["finished_at"] for r in lane.runs}
    again = LaneSupervisor(lane, folder_path, log=lines.append).run()
    assert again.skipped == 2 and again.workers_started == 0 and not again.succeeded
    assert before == {r.run_id: _record(folder_path, r.run_id)["finished_at"] for r in lane.runs}


@pytest.mark.skipif(shutil.which("numactl") is None,
                    reason="needs numactl (./numa-lab test installs it when run as root)")
def test_worker_is_bound_by_numactl(configs_dir, outputs_dir):
    folder_path, lane = tiny_lane("experiment.vit_configs=[{name:t,patch_size:8,depth:1,heads:2,dim:32,mlp_dim:64}]")
    LaneSupervisor(lane, folder_path, log=lambda _: None).run()
    rec = _record(folder_path, lane.runs[0].run_id)
    env = rec["environment"]
    assert env["binding"]["numactl"] == "numactl --cpunodebind=0 --membind=0"
    assert env["binding"]["mems_allowed"] == "0"
    node0 = {c for c in range(os.cpu_count()) if os.path.exists(f"/sys/devices/system/cpu/cpu{c}/node0")}
    assert env["binding"]["cpus_allowed"] and set(parse_cpulist(env["binding"]["cpus_allowed"])) <= node0
    assert rec["metrics"]["pool_pages"]["fraction_on_intended"] == 1.0  # the pool's pages are on node 0


def test_timeout_ends_the_worker_and_the_lane_goes_on(configs_dir, outputs_dir):
    folder_path, lane = tiny_lane()
    lane = with_test(lane, 0, num_samples=10_000_000, timeout_s=2, max_trial_time_s=1)  # cannot finish in 2 s
    outcome = LaneSupervisor(lane, folder_path, log=lambda _: None).run()
    slow, fast = (r.run_id for r in lane.runs)
    assert outcome.failed == [slow] and outcome.succeeded == [fast]
    assert outcome.workers_started == 2  # a fresh worker took the remaining run
    rec = _record(folder_path, slow)
    assert rec["success"] is False and rec["error"] == "timeout: run exceeded timeout_s=2"
    assert _record(folder_path, fast)["success"] is True


def _start_long_lane():
    """A lane whose first run cannot finish soon, running in a thread; returns what the tests need."""
    folder_path, lane = tiny_lane()
    lane = with_test(lane, 0, num_samples=10_000_000)
    sup = LaneSupervisor(lane, folder_path, log=lambda _: None)
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("outcome", sup.run()))
    thread.start()
    return folder_path, lane, sup, thread, box, _wait_for_start(folder_path, sup)


def test_worker_killed_mid_run_is_recorded_with_the_signal(configs_dir, outputs_dir):
    folder_path, lane, sup, thread, box, proc = _start_long_lane()
    os.kill(proc.pid, signal.SIGKILL)
    thread.join(timeout=300)
    outcome = box["outcome"]
    assert outcome.failed == [lane.runs[0].run_id]
    assert outcome.succeeded == [lane.runs[1].run_id]
    assert _record(folder_path, lane.runs[0].run_id)["error"] == "worker killed by signal SIGKILL"


def _group_gone(pgid: int, wait_s: float = 30.0) -> bool:
    """Whether process group ``pgid`` has no member left, allowing the kernel to finish the SIGKILLed ones."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def test_stop_ends_the_process_group_and_records_the_kill(configs_dir, outputs_dir):
    folder_path, lane, sup, thread, box, proc = _start_long_lane()
    sup.stop("killed: test")
    # recorded before stop() returns: Airflow may kill the task's process right after on_kill
    assert _record(folder_path, lane.runs[0].run_id)["error"] == "killed: test"
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert _group_gone(proc.pid), "a process of the worker's group survived"
    for spec in lane.runs:
        rec = _record(folder_path, spec.run_id)
        assert rec["success"] is False and rec["error"] == "killed: test"
    assert not results.successful(folder_path, lane.runs[1].run_id)


def test_stop_replaces_an_earlier_attempts_failure_with_the_kill(configs_dir, outputs_dir):
    folder_path, lane = tiny_lane()
    spec = lane.runs[0]
    results.write_json_atomic(results.record_path(folder_path, spec.run_id),
                              results.failed_record(spec, "timeout: an earlier attempt").to_json())
    sup = LaneSupervisor(lane, folder_path, log=lambda _: None)
    sup._current = spec  # this attempt's worker is measuring it when the task is stopped
    sup.stop("killed: test")
    assert _record(folder_path, spec.run_id)["error"] == "killed: test"


@pytest.mark.skipif(shutil.which("numactl") is None,
                    reason="needs numactl (pool placement is planned only where it exists)")
def test_a_pool_lane_run_where_numactl_is_gone_fails_each_run_with_the_reason(configs_dir, outputs_dir, monkeypatch):
    monkeypatch.delenv("NUMA_LAB_NUMACTL", raising=False)
    folder_path, lane = tiny_lane("experiment.hardware.placement=pool")  # planned here, where it can bind
    assert lane.placement_mode == "pool" and lane.name.endswith("-pool0")
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "off")  # ...and run where it cannot
    lines = []
    outcome = LaneSupervisor(lane, folder_path, log=lines.append).run()
    assert outcome.workers_started == 0 and len(outcome.failed) == 2
    for spec in lane.runs:
        rec = _record(folder_path, spec.run_id)
        assert not rec["success"] and rec["placement_mode"] == "pool"
        assert rec["error"].startswith("hardware.placement=pool: numactl not found")
        assert "use hardware.placement=process" in rec["error"]


def test_every_worker_event_has_one_handler(configs_dir, outputs_dir):
    from numa_ops.worker import protocol

    folder_path, lane = tiny_lane()
    assert set(LaneSupervisor(lane, folder_path)._handlers) == set(protocol.EVENTS)
    assert len(set(protocol.EVENTS)) == len(protocol.EVENTS)
