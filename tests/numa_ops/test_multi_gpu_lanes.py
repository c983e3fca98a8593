"""Lanes of several GPUs working on one plan: pooled runs (``hardware.spread``) and multi-GPU
patterns timed together behind a barrier (``hardware.together``), with real workers.

The host has no GPU: workers measure on the CPU with ``NUMA_LAB_FAKE_GPU=1`` and run unbound on a
simulated 2-GPU host (see test_gpu_scheduling.py).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from filelock import FileLock
from numa_ops import pipeline, plan, results
from numa_ops.operators import NumaLaneOperator
from numa_ops.topology import discover
from numa_ops.worker import coordination

from tests.numa_ops.fake_sysfs import make_sysfs
from tests.numa_ops.lanes import run_spec

TINY = [
    "experiment.hardware.numa_nodes=[0]", "experiment.test.num_samples=512",
    "experiment.test.min_trials=3", "experiment.test.max_trials=3", "experiment.test.telemetry=off",
    "experiment.vit_configs=[{name:t,patch_size:8,depth:1,heads:2,dim:32,mlp_dim:64}]",
]


@pytest.fixture
def two_gpus(tmp_path, monkeypatch, configs_dir, outputs_dir):
    monkeypatch.setenv("NUMA_LAB_FAKE_GPU", "1")
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "off")
    monkeypatch.setenv("NUMA_LAB_TORCH_THREADS", "1")
    return discover(make_sysfs(tmp_path / "sys", {0: "0", 1: "1"}, {"0000:3b:00.0": 0, "0000:af:00.0": 1}),
                    use_nvml=False)


def _records(folder_path):
    return [json.loads(p.read_text()) for p in sorted((folder_path / "runs").glob("*.json"))]


def test_pooled_runs_are_measured_once_each(two_gpus):
    folder_path, lanes = pipeline.prepare("tiny", [*TINY, "experiment.hardware.spread=true",
                                                   "experiment.test.batch_size=4,8,16,32"], two_gpus)
    # one run was measured in an earlier attempt: no lane measures it again
    done = lanes[0].runs[0]
    results.write_json_atomic(results.record_path(folder_path, done.run_id),
                              {**results.base_record(done).to_json(), "success": True, "metrics": {}, "earlier": True})
    outcomes = pipeline.run_lanes(lanes, folder_path, max_workers=2, log=lambda _: None)
    recs = _records(folder_path)
    assert len(recs) == 4 and all(r["success"] and r["pooled"] for r in recs)
    assert next(r for r in recs if r["run_id"] == done.run_id).get("earlier")
    measured = [run_id for o in outcomes for run_id in o.succeeded]
    assert sorted(measured) == sorted(r["run_id"] for r in recs if not r.get("earlier"))  # each once
    for o in outcomes:  # every run was skipped up front, measured here, or taken by the other lane
        assert o.skipped + len(o.succeeded) + len(o.elsewhere) == 4 and not o.failed
    for r in recs:  # each record names the lane and GPU that measured it
        assert r["lane"] == f"gpu{r['gpu_id']}-cpu0-mem0"


def test_a_pattern_times_its_gpus_together(two_gpus):
    folder_path, lanes = pipeline.prepare("tiny", [*TINY, "experiment.hardware.gpu_ids=[0,1]",
                                                   "experiment.hardware.together=true"], two_gpus)
    pipeline.run_lanes(lanes, folder_path, max_workers=1, log=lambda _: None)  # the pattern raises it to 2
    a, b = _records(folder_path)
    assert a["success"] and b["success"], (a.get("error"), b.get("error"))
    assert a["group_id"] == b["group_id"] == a["group"]["id"] == b["group"]["id"]
    assert a["group"]["lanes"] == ["gpu0-cpu0-mem0", "gpu1-cpu0-mem0"] and a["group"]["absent"] == []
    assert a["group"]["leader"] == "gpu0-cpu0-mem0" and a["group"]["stragglers"] == []  # waited for gpu1 to finish
    assert a["finished_at"] >= b["finished_at"]
    ma, mb = a["metrics"], b["metrics"]
    assert ma["timed_from"] < mb["timed_to"] and mb["timed_from"] < ma["timed_to"]  # the timed trials overlap
    for rec in (a, b):  # each GPU timed only after every GPU had arrived
        assert max(a["group"]["arrived_at"], b["group"]["arrived_at"]) <= rec["group"]["released_at"]
        assert rec["group"]["released_at"] <= rec["metrics"]["timed_from"]
    assert not any(p.is_file() for p in (folder_path / "barriers").rglob("*"))  # every mark taken off
    summary = results.finalize(folder_path)
    (group,) = summary["groups"]
    assert group["gpus"] == [0, 1] and group["complete"]
    assert group["aggregate_samples_per_s"] == pytest.approx(ma["samples_per_s"] + mb["samples_per_s"])


def test_a_pattern_whose_other_gpu_never_comes_fails_with_the_reason(two_gpus):
    folder_path, lanes = pipeline.prepare("tiny", [*TINY, "experiment.hardware.gpu_ids=[0,1]",
                                                   "experiment.hardware.together=true", "experiment.test.timeout_s=3",
                                                   "experiment.test.max_trial_time_s=1",
                                                   "experiment.hardware.barrier_timeout_s=4"],
                                          two_gpus)
    pipeline.run_lanes(lanes[:1], folder_path, log=lambda _: None)  # gpu1's lane never starts
    (rec,) = _records(folder_path)
    assert not rec["success"]  # failed by the worker at the barrier's limit, not killed at the run's timeout_s=3
    assert "barrier of group " in rec["error"] and "lanes ['gpu1-cpu0-mem0'] did not arrive within 4 s" in rec["error"]


def test_a_pattern_gives_up_at_once_when_another_gpus_run_failed(two_gpus):
    folder_path, lanes = pipeline.prepare("tiny", [*TINY, "experiment.hardware.gpu_ids=[0,1]",
                                                   "experiment.hardware.together=true"], two_gpus)
    other = next(r for r in lanes[1].runs)
    results.write_json_atomic(results.record_path(folder_path, other.run_id),
                              results.failed_record(other, "out of memory: planted").to_json())
    os.utime(results.record_path(folder_path, other.run_id), (4e9, 4e9))  # newer than gpu0's arrival
    pipeline.run_lanes(lanes[:1], folder_path, log=lambda _: None)
    rec = next(r for r in _records(folder_path) if r["lane"] == "gpu0-cpu0-mem0")
    assert "gpu1-cpu0-mem0's run of the pattern failed: out of memory: planted" in rec["error"]


def test_claims(tmp_path):
    spec = run_spec("f.s.pool.t.1", "gpu0-cpu0-mem0", gpu_id=0)
    first = coordination.claim(tmp_path, spec, since=0.0)
    assert isinstance(first, FileLock) and first.is_locked
    assert coordination.claim(tmp_path, spec, since=0.0) == "being measured by another lane"
    results.write_json_atomic(results.record_path(tmp_path, spec.run_id), results.failed_record(spec, "boom").to_json())
    first.release()
    mtime = results.record_path(tmp_path, spec.run_id).stat().st_mtime
    assert "already failed on gpu0-cpu0-mem0 in this attempt: boom" in coordination.claim(tmp_path, spec, since=mtime)
    again = coordination.claim(tmp_path, spec, since=mtime + 1)  # a later attempt tries a failed run again
    assert isinstance(again, FileLock) and again.is_locked
    results.write_json_atomic(results.record_path(tmp_path, spec.run_id),
                              {**results.base_record(spec).to_json(), "success": True})
    again.release()
    assert coordination.claim(tmp_path, spec, since=0.0) == "already measured on gpu0-cpu0-mem0"
    assert os.listdir(tmp_path / "claims") == ["f.s.pool.t.1.lock"]


def test_in_a_pattern_sweep_a_gpu_alone_is_measured_alone(two_gpus):
    folder_path, lanes = pipeline.prepare(
        "tiny", [*TINY, 'experiment.hardware.gpu_ids="[0],[1],[0,1]"'],
        two_gpus)
    pipeline.run_lanes(lanes, folder_path, max_workers=2, log=lambda _: None)
    recs = _records(folder_path)
    assert len(recs) == 4 and all(r["success"] for r in recs), [r.get("error") for r in recs]
    windows = {}  # the pattern's windows, or each single run's: no two overlap
    for r in recs:
        key = r["group_id"] or r["run_id"]
        lo, hi = windows.get(key, (float("inf"), 0.0))
        windows[key] = (min(lo, r["metrics"]["timed_from"]), max(hi, r["metrics"]["timed_to"]))
    spans = sorted(windows.values())
    assert len(spans) == 3 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


LOCAL_THEN_REMOTE = [*TINY, "experiment.hardware.gpu_ids=[0,1]", "experiment.hardware.together=true",
                     "experiment.hardware.numa_nodes=local,remote", "experiment.hardware.barrier_timeout_s=30"]


def test_patterns_on_local_and_remote_nodes_meet_in_one_order(two_gpus):
    # local: gpu0-cpu0 with gpu1-cpu1; remote: gpu0-cpu1 with gpu1-cpu0. In name order each GPU would
    # start with a different pattern and wait at its barrier for a lane the other GPU has not started.
    folder_path, lanes = pipeline.prepare("tiny", LOCAL_THEN_REMOTE, two_gpus)
    pipeline.run_lanes(lanes, folder_path, max_workers=1, log=lambda _: None)
    recs = _records(folder_path)
    assert len(recs) == 4 and all(r["success"] for r in recs), [r.get("error") for r in recs]
    assert {r["placement"] for r in recs} == {"local", "remote"}
    assert len({r["group_id"] for r in recs}) == 2


def test_airflow_measures_each_gpus_lanes_in_one_task_in_pattern_order(two_gpus):
    folder_path, lanes = pipeline.prepare("tiny", LOCAL_THEN_REMOTE, two_gpus)
    units = [turn.to_json() for turn in plan.device_turns(lanes, max_concurrent=2)]
    assert [(u["name"], [lane["name"] for lane in u["lanes"]]) for u in units] == [
        ("gpu0", ["gpu0-cpu0-mem0", "gpu0-cpu1-mem1"]), ("gpu1", ["gpu1-cpu1-mem1", "gpu1-cpu0-mem0"])]
    with ThreadPoolExecutor(max_workers=2) as pool:  # the two mapped task instances, at once
        outcomes = list(pool.map(lambda u: NumaLaneOperator(task_id="measure", lane=u).execute({}), units))
    assert all(len(o["lanes"]) == 2 for o in outcomes)
    assert sum(len(lane["succeeded"]) for o in outcomes for lane in o["lanes"]) == 4


def test_a_gpu_task_stopped_before_its_turn_records_every_run_killed(two_gpus):
    folder_path, lanes = pipeline.prepare("tiny", LOCAL_THEN_REMOTE, two_gpus)
    unit = plan.device_turns(lanes, max_concurrent=2)[0].to_json()
    op = NumaLaneOperator(task_id="measure", lane=unit)
    op.on_kill()
    with pytest.raises(RuntimeError, match="2 of 2 runs failed"):
        op.execute({})
    recs = _records(folder_path)
    assert len(recs) == 2 and all(r["error"] == "killed: the Airflow task was stopped" for r in recs)
