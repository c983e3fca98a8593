"""Marking a running measure task failed in a real Airflow ends its worker's process group and
records the run as killed; nothing of the worker survives."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.integration.conftest import call, dag_runs, wait_for_dags

pytestmark = pytest.mark.integration
DAG = "phase1_framework_validation"


def _workers(outputs_dir):
    out = subprocess.run(["pgrep", "-af", "numa_ops.worker"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(outputs_dir) in line]


def test_marking_the_task_failed_kills_the_worker(airflow, outputs_dir):
    token, log = airflow
    wait_for_dags(token, [DAG])
    conf = {"experiment": "tiny", "overrides": [
        "experiment.test.num_samples=10000000", "experiment.test.timeout_s=900", "experiment.test.max_trial_time_s=600"]}
    run_id = call("POST", f"/api/v2/dags/{DAG}/dagRuns", token, {"logical_date": None, "conf": conf})["dag_run_id"]
    deadline = time.monotonic() + 240
    started = None
    while time.monotonic() < deadline and started is None:
        time.sleep(2)
        logs = list(outputs_dir.glob("*/experiment.log"))
        if logs and '"event": "start"' in logs[0].read_text():
            started = logs[0].parent
    assert started, f"the worker never started a run\n{log.read_text()[-3000:]}"
    assert _workers(outputs_dir), "no worker process found while a run was measuring"
    path = f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/measure/0"
    call("PATCH", path, token, {"new_state": "failed"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _workers(outputs_dir):
        time.sleep(2)
    assert not _workers(outputs_dir), "a worker survived the killed task"
    records = [json.loads(p.read_text()) for p in (started / "runs").glob("*.json")]
    assert records and all(not r["success"] for r in records)
    assert any(r["error"].startswith("killed") for r in records), [r["error"] for r in records]
    assert dag_runs(token, DAG)[0]["dag_run_id"] == run_id
