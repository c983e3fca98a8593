"""The route a user takes in the UI, in one real ``airflow standalone`` started through ``./numa-lab airflow
standalone`` (the tests below share it, in this order): the trigger form's refusals over the REST API (the form
posts there), a refused plan ends the DAG run failed with the planner's message last in ``plan_runs``'s log, an
ad-hoc Phase 1 starts nothing, marking a measuring task failed kills its worker and records the run as killed, and
the full Phase 1 starts Phases 2 and 3 through its Asset, and Phase 4 after 2, each passing its gate."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from tests.conftest import TINY, live_workers
from tests.integration.conftest import REPO, airflow_env, call, dag_runs, free_port, refusal, standalone, wait_for_dags

pytestmark = pytest.mark.integration

P1, P2, P3, P4 = "phase1_framework_validation", "phase2_numa_locality", "phase3_scaling", "phase4_memory_transfer"
GATE = {"max_failure_rate": 0.0}  # as the chain test: the route is under test, with tiny CPU runs


def test_phases_yaml(shipped: dict) -> dict:
    """Not a test: the shipped phases.yaml with tiny studies (Phase 1 keeps its study names) and only the shipped
    1 -> 2, 3 and 2 -> 4 (so that what starts is done before Airflow stops)."""
    after = {P2: [P1], P3: [P1], P4: [P2]}
    assert all(shipped[name]["after"] == a for name, a in after.items())  # as shipped
    phases = {}
    for name, phase in shipped.items():
        phases[name] = {**phase, "after": after.get(name, []), "gate": GATE,
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
    return call("POST", f"/api/v2/dags/{dag_id}/dagRuns", token, {"logical_date": None, "conf": conf},
                base=base)["dag_run_id"]


class Route(NamedTuple):
    token: str
    base: str
    home: Path
    log: Path
    outputs: Path


@pytest.fixture(scope="module")
def route(tmp_path_factory) -> Iterator[Route]:
    """One ``./numa-lab airflow standalone`` with the shipped phases on tiny studies, Phases 1-4 parsed and unpaused."""
    root = tmp_path_factory.mktemp("route")
    configs, outputs = root / "configs", root / "outputs"
    shutil.copytree(REPO / "include" / "configs", configs)
    (configs / "tiny.yaml").write_text(TINY)
    shipped = yaml.safe_load((configs / "phases.yaml").read_text())
    (configs / "phases.yaml").write_text(yaml.safe_dump(test_phases_yaml(shipped), sort_keys=False))
    outputs.mkdir()
    port = free_port()
    base = f"http://localhost:{port}"
    home = root / "airflow"
    # PATH as the user has it: the wrapper itself puts the venv's commands first (standalone runs `airflow`)
    env = {**airflow_env(home, port), "AIRFLOW__CORE__PARALLELISM": "3",
           "NUMA_LAB_OUTPUTS": str(outputs), "NUMA_LAB_CONFIGS": str(configs)}
    log = root / "standalone.log"
    with standalone([str(REPO / "numa-lab"), "airflow", "standalone"], env, home, log, base=base) as token:
        wait_for_dags(token, [P1, P2, P3, P4], base=base)
        yield Route(token, base, home, log, outputs)


def test_the_form_refuses_bad_requests_and_creates_no_run(route):
    """The API answers 400 with the planner's own message, and no DAG run is created."""
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
        status, detail = refusal("POST", f"/api/v2/dags/{P1}/dagRuns", route.token,
                                 {"logical_date": None, "conf": conf}, base=route.base)
        assert status == 400 and words in str(detail), (conf, status, detail)
    assert dag_runs(route.token, P1, base=route.base) == []


def test_a_refused_plan_fails_the_run_with_the_planners_message(route):
    token, base, home = route.token, route.base, route.home
    refused = trigger(token, P1, {"overrides": ["experiment.hardware.gpu_ids=[7]"]}, base)
    assert wait_done(token, P1, refused, base) == "failed", route.log.read_text()[-3000:]
    plan_log = task_log(home, P1, refused, "plan_runs")
    assert printed(plan_log)[-1].startswith("plan refused: experiment.hardware.gpu_ids: GPU [7] not found")
    assert plan_log[-1]["event"] == "::endgroup::" or "plan refused" in json.dumps(plan_log[-3:])
    gate_lines = printed(task_log(home, P1, refused, "gate"))
    assert gate_lines[-1].startswith("nothing was planned (plan_runs failed: experiment.hardware.gpu_ids: GPU [7]")
    states = {t["task_id"]: t["state"] for t in call(
        "GET", f"/api/v2/dags/{P1}/dagRuns/{refused}/taskInstances", token, base=base)["task_instances"]}
    assert states["plan_runs"] == "failed" and states["gate"] == "failed", states


def test_an_adhoc_phase1_passes_its_gate_and_starts_nothing(route):
    """An ad-hoc Phase 1 run passes its gate but is not the phase: nothing after it starts."""
    token, base = route.token, route.base
    adhoc = trigger(token, P1, {"experiment": "tiny"}, base)
    assert wait_done(token, P1, adhoc, base) == "success", route.log.read_text()[-3000:]
    assert any("not the phase as phases.yaml defines it (ad-hoc experiment tiny" in line
               for line in printed(task_log(route.home, P1, adhoc, "gate")))
    time.sleep(10)  # the scheduler would have created Phase 2's and 3's runs by now
    assert dag_runs(token, P2, base=base) == [] and dag_runs(token, P3, base=base) == []


def test_marking_the_task_failed_kills_the_worker(route):
    """Marking a running measure task failed ends its worker's process group and records the run as killed; nothing
    of the worker survives, and nothing after Phase 1 starts."""
    token, base, outputs = route.token, route.base, route.outputs
    before = set(outputs.iterdir())
    conf = {"experiment": "tiny", "overrides": [
        "experiment.test.num_samples=10000000", "experiment.test.timeout_s=900",
        "experiment.test.max_trial_time_s=600"]}
    run_id = trigger(token, P1, conf, base)
    deadline = time.monotonic() + 240
    started = None
    while time.monotonic() < deadline and started is None:
        time.sleep(2)
        logs = [p / "experiment.log" for p in set(outputs.iterdir()) - before if (p / "experiment.log").is_file()]
        if logs and '"event": "start"' in logs[0].read_text():
            started = logs[0].parent
    assert started, f"the worker never started a run\n{route.log.read_text()[-3000:]}"
    assert live_workers(outputs), "no worker process found while a run was measuring"
    call("PATCH", f"/api/v2/dags/{P1}/dagRuns/{run_id}/taskInstances/measure/0", token, {"new_state": "failed"},
         base=base)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and live_workers(outputs):
        time.sleep(2)
    assert not live_workers(outputs), "a worker survived the killed task"
    records = [json.loads(p.read_text()) for p in (started / "runs").glob("*.json")]
    assert records and all(not r["success"] for r in records)
    assert any(r["error"].startswith("killed") for r in records), [r["error"] for r in records]
    assert wait_done(token, P1, run_id, base) == "failed"
    assert dag_runs(token, P2, base=base) == []


def test_the_full_phase1_starts_the_chain(route):
    """The full Phase 1 (its studies, as phases.yaml defines them) starts Phases 2 and 3 through its Asset, and
    Phase 4 after 2; each succeeds and its folder passed its gate."""
    token, base = route.token, route.base
    full = trigger(token, P1, {}, base)
    assert wait_done(token, P1, full, base) == "success", route.log.read_text()[-3000:]
    assert any(line == f"Asset {P1} updated" for line in printed(task_log(route.home, P1, full, "gate")))
    for dag_id in (P2, P3, P4):  # Phase 4 starts once Phase 2 is done
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and not dag_runs(token, dag_id, base=base):
            time.sleep(3)
        (run,) = dag_runs(token, dag_id, base=base)
        assert run["run_type"] == "asset_triggered"
        assert wait_done(token, dag_id, run["dag_run_id"], base) == "success", route.log.read_text()[-3000:]
        (folder,) = [p for p in route.outputs.iterdir() if p.name.startswith(dag_id.split("_")[0] + "_")]
        assert json.loads((folder / "gate.json").read_text())["passed"], folder.name
