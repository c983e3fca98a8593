"""The real worker process on the CPU with a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from numa_ops.record import Reproduce, RunMetrics, RunPlacement, RunRecord, Versions
from numa_ops.specs import runs_to_json
from numa_ops.worker.protocol import parse_event

from tests.numa_ops.lanes import tiny_lane
from tests.numa_ops.test_record import key_paths

# The keys of a successful CPU record: those the record model says every record holds (a test of the model pins
# them to the records written before it, tests/numa_ops/data/records_before_model, and the keys added since).
RECORD_KEYS = RunRecord.keys()
METRICS_KEYS = RunMetrics.keys()
BEFORE = json.loads((Path(__file__).parents[1] / "data" / "records_before_model" / "cpu_tiny.json").read_text())
# every nested key the worker writes since those records: how to reproduce the run (its own subtree, pinned by the
# model below), a rerun's original, and the environment's vit-pytorch and numactl versions
ADDED_PATHS = {"rerun_of", "environment.vit_pytorch", "environment.numactl_version"}
TEST_KEYS = (
    "batch_size", "ci_target", "compile_model", "d2h_mode", "execution", "intra_op_threads", "max_trial_time_s",
    "max_trials", "memory_size_mb", "min_trial_s", "min_trials", "num_samples", "paired_max_blocks", "paired_max_s",
    "paired_min_blocks", "paired_target", "pinned_memory", "repeats", "telemetry", "tensor_shape", "timeout_s",
    "warmup_batches",
)


def _run_worker(runs_file, folder_path):
    return subprocess.run(
        [sys.executable, "-m", "numa_ops.worker", "--runs", str(runs_file), "--folder-path", str(folder_path)],
        capture_output=True, text=True, timeout=300,
    )


def test_worker_measures_and_writes_records(configs_dir, outputs_dir):
    folder_path, lane = tiny_lane()
    runs_file = folder_path / "todo.json"
    runs_file.write_text(json.dumps(runs_to_json(lane.runs)))
    proc = _run_worker(runs_file, folder_path)
    assert proc.returncode == 0, proc.stderr
    events = [e for e in map(parse_event, proc.stdout.splitlines()) if e]
    assert [e["event"] for e in events] == ["ready", "start", "end", "start", "end", "done"]
    for spec in lane.runs:
        rec = json.loads((folder_path / "runs" / f"{spec.run_id}.json").read_text())
        assert rec["success"] is True and rec["error"] is None
        assert rec["device"] == "cpu"
        assert tuple(sorted(rec)) == RECORD_KEYS and tuple(sorted(rec["test"])) == TEST_KEYS
        assert tuple(sorted(rec["metrics"])) == METRICS_KEYS
        reproduce = key_paths({"reproduce": rec["reproduce"]})
        assert key_paths(rec) == key_paths(BEFORE) | ADDED_PATHS | reproduce  # as the worker wrote them before
        assert tuple(sorted(rec["reproduce"])) == Reproduce.keys()
        assert tuple(sorted(rec["reproduce"]["placement"])) == RunPlacement.keys()
        assert tuple(sorted(rec["reproduce"]["versions"])) == Versions.keys()
        assert RunRecord.model_validate(rec).to_json() == rec
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
        assert (m["flops_per_sample"] > 0
                and m["d2h_bytes_per_sample"] == (rec["model"]["num_classes"] + rec["model"]["dim"]) * 4)
        env = rec["environment"]
        assert env["torch"] and env["host"] and env["binding"]["cpus_allowed"]
        assert rec["gpu_id"] is None and rec["numa_node"] == 0


def test_failing_run_is_recorded_and_the_lane_goes_on(configs_dir, outputs_dir):
    folder_path, lane = tiny_lane()
    first, second = runs_to_json(lane.runs)  # as the runs file holds them
    bad = dict(first, run_id=first["run_id"] + "-bad")
    bad["model"] = dict(bad["model"], patch_size=7)  # does not divide 32: vit-pytorch refuses it
    runs_file = folder_path / "todo.json"
    runs_file.write_text(json.dumps([bad, second]))
    proc = _run_worker(runs_file, folder_path)
    assert proc.returncode == 0
    failed = json.loads((folder_path / "runs" / f"{bad['run_id']}.json").read_text())
    assert failed["success"] is False and "divisible" in failed["error"]
    ok = json.loads((folder_path / "runs" / f"{second['run_id']}.json").read_text())
    assert ok["success"] is True


def test_allocation_failure_is_recorded_as_out_of_memory(configs_dir, outputs_dir):
    folder_path, lane = tiny_lane()
    first, second = runs_to_json(lane.runs)
    huge = dict(first, run_id=first["run_id"] + "-huge")
    huge["test"] = dict(huge["test"], memory_size_mb=900_000)  # more than this host can give: a real allocation failure
    runs_file = folder_path / "todo.json"
    runs_file.write_text(json.dumps([huge, second]))
    proc = _run_worker(runs_file, folder_path)
    assert proc.returncode == 0
    failed = json.loads((folder_path / "runs" / f"{huge['run_id']}.json").read_text())
    assert failed["success"] is False and failed["error"].startswith("out of memory:")
    assert failed["failed_batch_size"] == huge["test"]["batch_size"]
    assert json.loads((folder_path / "runs" / f"{second['run_id']}.json").read_text())["success"]


def test_a_run_without_compile_never_imports_dynamo(configs_dir, outputs_dir):
    """Nothing compiled, nothing to reset: importing torch._dynamo alone took 10 of a CPU worker's 16 seconds."""
    folder_path, lane = tiny_lane()
    runs_file = folder_path / "todo.json"
    runs_file.write_text(json.dumps(runs_to_json(lane.runs)))
    assert not any(spec.test.compile_model for spec in lane.runs)
    code = ("import sys; from numa_ops.worker.__main__ import main; rc = main(sys.argv[1:]); "
            "print('dynamo imported:', 'torch._dynamo' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "--runs", str(runs_file), "--folder-path", str(folder_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "dynamo imported: False"
