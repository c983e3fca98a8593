"""The route a user takes in the UI, in a real ``airflow standalone`` started through ``./numa-lab airflow
standalone``: the trigger form's refusals over the REST API (the form posts there), a refused plan ends the
DAG run failed with the planner's message last in ``plan_runs``'s log, an ad-hoc Phase 1 starts nothing, and
the full Phase 1 starts Phases 2 and 3."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import REPO, airflow_env, call, dag_runs, free_port, refusal, standalone, wait_for_dags

pytestmark = pytest.mark.integration

P1, P2, P3 = "phase1_framework_validation", "phase2_numa_locality", "phase3_scaling"
GATE = {"max_failure_rate": 0.0}  # as the chain test: the route is under test, with tiny CPU runs


def test_phases_yaml(shipped: dict) -> dict:
    """Not a test: the shipped phases.yaml with tiny studies (Phase 1 keeps its study names) and only 1 -> 2, 3."""
    phases = {}
    for name, phase in shipped.items():
        phases[name] = {**phase, "after": [P1] if name in (P2, P3) else [], "gate": GATE,
                        "studies": {"tiny": {"experiment": "tiny"}}}
        phases[name].pop("schedule", None)
        phases[name].pop("baseline", None)
    phases[P1]["studies"] = {
        "quick_test": {"experiment": "tiny"},
        "baseline_single_gpu": {"experiment": "tiny", "overrides": ["experiment.test.num_samples=24"]},
    }
    return phases


test_phases_yaml.__test__ = False  # a helper whose name pytest would collect


def task_log(home: Path, dag_id: str, run_id: str, task_id: str) -> list[dict]:
    (path,) = (home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}").glob("attempt=*.log")
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def printed(events: list[dict]) -> list[str]:
    """What the task itself printed (Airflow's own framing lines left out)."""
    framing = ("::group::", "::endgroup::", "DAG bundles loaded", "Filling up the DagBag", "Worker startup",
               "Task failed with exception", "Pushing xcom", "Done. Returned value")
    return [str(e.get("event")) for e in events if not str(e.get("event")).startswith(framing)]


def wait_done(token, dag_id, run_id, base, timeout=300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", token, base=base)["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(3)
    raise AssertionError(f"{dag_id} {run_id} did not finish in {timeout} s")


def trigger(token, dag_id, conf, base) -> str:
    return call("POST", f"/api/v2/dags/{dag_id}/dagRuns", token, {"logical_date": None, "conf": conf}, base=base)["dag_run_id"]


def test_the_airflow_route(tmp_path, configs_dir, outputs_dir):
    shipped = yaml.safe_load((REPO / "include" / "configs" / "phases.yaml").read_text())
    (configs_dir / "phases.yaml").write_text(yaml.safe_dump(test_phases_yaml(shipped), sort_keys=False))
    port = free_port()
    base = f"http://localhost:{port}"
    home = tmp_path / "airflow"
    # PATH as the user has it: the wrapper itself puts the venv's commands first (standalone runs `airflow`)
    env = {**airflow_env(home, port), "AIRFLOW__CORE__PARALLELISM": "3",
           "NUMA_LAB_OUTPUTS": str(outputs_dir), "NUMA_LAB_CONFIGS": str(configs_dir)}
    log = tmp_path / "standalone.log"
    with standalone([str(REPO / "numa-lab"), "airflow", "standalone"], env, home, log, base=base) as token:
        wait_for_dags(token, [P1, P2, P3], base=base)

        # the form's refusals: the API answers 400 with the planner's own message, and no DAG run is created
        for conf, words in [
            ({"overrides": ["test.batch_size=4"]}, "unknown key 'test.batch_size': overrides start with 'experiment.'"),
            ({"overrides": ["experiment.test.bogus=1"]}, "experiment.test.bogus: unknown key"),
            ({"overrides": ["experiment.test.batch_size=0"]},
             "experiment.test.batch_size: Input should be greater than or equal to 1 (got 0)"),
            ({"sweeps": ["experiment.test.batch_size=4,0"]}, "experiment.test.batch_size: Input should be greater"),
            ({"overrides": ["experiment=no_such_experiment"]}, "no_such_experiment"),
            ({"overrides": ["experiment.test.batch_size=4;rm -rf ~"]}, "experiment"),
            ({"experiment": "no_such_experiment"}, "no_such_experiment"),
            ({"num_samples": 0}, "0"),
            ({"studies": ["no_such_study"]}, "no_such_study"),
        ]:
            status, detail = refusal("POST", f"/api/v2/dags/{P1}/dagRuns", token,
                                     {"logical_date": None, "conf": conf}, base=base)
            assert status == 400 and words in str(detail), (conf, status, detail)
        assert dag_runs(token, P1, base=base) == []

        # a plan the host refuses: the DAG run fails, plan_runs's log ends with the planner's message
        refused = trigger(token, P1, {"overrides": ["experiment.hardware.gpu_ids=[7]"]}, base)
        assert wait_done(token, P1, refused, base) == "failed", log.read_text()[-3000:]
        plan_log = task_log(home, P1, refused, "plan_runs")
        assert printed(plan_log)[-1].startswith("plan refused: experiment.hardware.gpu_ids: GPU [7] not found")
        assert plan_log[-1]["event"] == "::endgroup::" or "plan refused" in json.dumps(plan_log[-3:])
        gate_lines = printed(task_log(home, P1, refused, "gate"))
        assert gate_lines[-1].startswith("nothing was planned (plan_runs failed: experiment.hardware.gpu_ids: GPU [7]")
        states = {t["task_id"]: t["state"] for t in call(
            "GET", f"/api/v2/dags/{P1}/dagRuns/{refused}/taskInstances", token, base=base)["task_instances"]}
        assert states["plan_runs"] == "failed" and states["gate"] == "failed", states

        # an ad-hoc Phase 1 run passes its gate but is not the phase: nothing after it starts
        adhoc = trigger(token, P1, {"experiment": "tiny"}, base)
        assert wait_done(token, P1, adhoc, base) == "success", log.read_text()[-3000:]
        assert any("not the phase as phases.yaml defines it (ad-hoc experiment tiny" in line
                   for line in printed(task_log(home, P1, adhoc, "gate")))
        time.sleep(10)  # the scheduler would have created Phase 2's and 3's runs by now
        assert dag_runs(token, P2, base=base) == [] and dag_runs(token, P3, base=base) == []

        # the full Phase 1 (its studies, as phases.yaml defines them) starts Phases 2 and 3
        full = trigger(token, P1, {}, base)
        assert wait_done(token, P1, full, base) == "success", log.read_text()[-3000:]
        assert any(line == f"Asset {P1} updated" for line in printed(task_log(home, P1, full, "gate")))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (dag_runs(token, P2, base=base) and dag_runs(token, P3, base=base)):
            time.sleep(3)
        for dag_id in (P2, P3):
            (run,) = dag_runs(token, dag_id, base=base)
            assert run["run_type"] == "asset_triggered"
            wait_done(token, dag_id, run["dag_run_id"], base)  # stop Airflow only once they are done
