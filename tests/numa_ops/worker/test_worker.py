"""The real worker process on the CPU with a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from numa_ops.worker.protocol import parse_event

from tests.numa_ops.lanes import tiny_lane


def _run_worker(runs_file, folder_path):
    return subprocess.run(
        [sys.executable, "-m", "numa_ops.worker", "--runs", str(runs_file), "--folder-path", str(folder_path)],
        capture_output=True, text=True, timeout=300,
    )


def test_worker_measures_and_writes_records(configs_dir, outputs_dir):
    folder_path, lane = tiny_lane()
    runs_file = folder_path / "todo.json"
    runs_file.write_text(json.dumps(lane["runs"]))
    proc = _run_worker(runs_file, folder_path)
    assert proc.returncode == 0, proc.stderr
    events = [e for e in map(parse_event, proc.stdout.splitlines()) if e]
    assert [e["event"] for e in events] == ["ready", "start", "end", "start", "end", "done"]
    for spec in lane["runs"]:
        rec = json.loads((folder_path / "runs" / f"{spec['run_id']}.json").read_text())
        assert rec["success"] is True and rec["error"] is None
        assert rec["device"] == "cpu"
        m = rec["metrics"]
        assert m["samples_measured"] == 16 and m["batches"] == 4
        assert m["samples_per_s"] > 0 and m["forward_ms"]["median"] > 0
        assert m["copies"].startswith("skipped")
        assert m["h2d_ms"]["median"] is None and m["h2d_gbps"] is None
        assert m["parameters"] > 0
        assert m["trials"] >= 3 and m["stop_reason"] in ("planned", "max_trials", "time_budget")
        assert m["samples_per_s_ci"]["n"] == m["trials"] and m["samples_per_s_ci"]["median"] == m["samples_per_s"]
        assert m["samples_per_s_ci"]["low"] <= m["samples_per_s"] <= m["samples_per_s_ci"]["high"]
        # beside every trial: the CPU-speed control and what disturbed the launching thread
        assert len(m["cpu_control"]["trials"]) == m["trials"] and m["cpu_control_rate"] > 0
        assert len(m["trial_disturbance"]) == m["trials"] == len(m["trial_flags"]) == len(m["trial_s"])
        assert all(d["involuntary_switches"] >= 0 for d in m["trial_disturbance"])
        assert m["launch_cpu"] in os.sched_getaffinity(0) and m["launch_cpu_node"] == 0
        assert m["telemetry"]["when"] == "off" and m["telemetry"]["gpu_util_pct_mean"] is None
        assert m["pipelined_samples_per_s"] is None and m["regime"] is None  # no copies on the CPU
        assert m["flops_per_sample"] > 0 and m["d2h_bytes_per_sample"] == (rec["model"]["num_classes"] + rec["model"]["dim"]) * 4
        env = rec["environment"]
        assert env["torch"] and env["host"] and env["binding"]["cpus_allowed"]
        assert rec["gpu_id"] is None and rec["numa_node"] == 0


def test_failing_run_is_recorded_and_the_lane_goes_on(configs_dir, outputs_dir):
    folder_path, lane = tiny_lane()
    bad = dict(lane["runs"][0], run_id=lane["runs"][0]["run_id"] + "-bad")
    bad["model"] = dict(bad["model"], patch_size=7)  # does not divide 32: vit-pytorch refuses it
    runs_file = folder_path / "todo.json"
    runs_file.write_text(json.dumps([bad, lane["runs"][1]]))
    proc = _run_worker(runs_file, folder_path)
    assert proc.returncode == 0
    failed = json.loads((folder_path / "runs" / f"{bad['run_id']}.json").read_text())
    assert failed["success"] is False and "divisible" in failed["error"]
    ok = json.loads((folder_path / "runs" / f"{lane['runs'][1]['run_id']}.json").read_text())
    assert ok["success"] is True


def test_allocation_failure_is_recorded_as_out_of_memory(configs_dir, outputs_dir):
    folder_path, lane = tiny_lane()
    huge = dict(lane["runs"][0], run_id=lane["runs"][0]["run_id"] + "-huge")
    huge["test"] = dict(huge["test"], memory_size_mb=900_000)  # more than this host can give: a real allocation failure
    runs_file = folder_path / "todo.json"
    runs_file.write_text(json.dumps([huge, lane["runs"][1]]))
    proc = _run_worker(runs_file, folder_path)
    assert proc.returncode == 0
    failed = json.loads((folder_path / "runs" / f"{huge['run_id']}.json").read_text())
    assert failed["success"] is False and failed["error"].startswith("out of memory:")
    assert failed["failed_batch_size"] == huge["test"]["batch_size"]
    assert json.loads((folder_path / "runs" / f"{lane['runs'][1]['run_id']}.json").read_text())["success"]
