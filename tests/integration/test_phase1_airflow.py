"""``airflow dags test phase1_framework_validation`` end to end: real Airflow, real workers, DuckDB, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
pytestmark = pytest.mark.integration


def _airflow(home: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONWARNINGS": "ignore",
    }


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    """One migrated metadata database for the module: each ``dags test`` makes a DAG run of its own in it."""
    home = tmp_path_factory.mktemp("airflow")
    subprocess.run([AIRFLOW, "db", "migrate"], env={**os.environ, **_airflow(home)}, check=True,
                   capture_output=True, timeout=300)
    return home


@pytest.fixture
def airflow_env(airflow_home, configs_dir, outputs_dir):
    """This test's configs and outputs folders (set by their fixtures) with the module's Airflow."""
    return {**os.environ, **_airflow(airflow_home)}


def dags_test(env, experiment="tiny", overrides=()):
    conf = json.dumps({"experiment": experiment, "overrides": list(overrides)})
    return subprocess.run(
        [AIRFLOW, "dags", "test", "phase1_framework_validation", "-c", conf],
        env=env, capture_output=True, text=True, timeout=600,
    )


def run_folders(outputs):
    return sorted(p for p in outputs.iterdir() if (p / "runs").is_dir())


def count_runs(outputs):
    with duckdb.connect(str(outputs / "numa_lab.duckdb"), read_only=True) as con:
        return con.execute("SELECT count(*) FROM runs").fetchone()[0]


def test_phase1_end_to_end_twice(airflow_env, outputs_dir):
    first = dags_test(airflow_env)
    out = first.stdout + first.stderr
    assert "state=success" in out, out[-4000:]
    assert "rendered_map_index='cpu-cpu0-mem0'" in out  # the mapped instance is named by its lane
    (folder,) = run_folders(outputs_dir)
    rows = json.loads((folder / "results.json").read_text())
    assert len(rows) == 2 and all(r["success"] for r in rows)
    assert {"run_id", "duration", "success", "gpu_id", "numa_node"} <= set(rows[0])
    summary = json.loads((folder / "experiment_summary.json").read_text())
    assert summary["successful_runs"] == 2 and summary["missing_runs"] == 0
    assert "run 2/2 ok" in out  # per-run progress in the task log
    assert (folder / "experiment.log").read_text().count('"event": "end"') == 2
    assert count_runs(outputs_dir) == 2
    assert (folder / "report" / "index.html").is_file() and (outputs_dir / "report" / "index.html").is_file()
    latest = json.loads((outputs_dir / "latest.json").read_text())
    assert latest["folders"][folder.name]["results_json"] == str(folder / "results.json")

    second = dags_test(airflow_env)
    assert "state=success" in second.stdout + second.stderr
    folders = run_folders(outputs_dir)
    assert len(folders) == 2
    assert count_runs(outputs_dir) == 4  # exactly the new runs were added


def test_bad_input_fails_before_any_run(airflow_env, outputs_dir):
    # an unknown key, past the trigger form (``dags test`` has none): the planner refuses it. A GPU the host lacks
    # is refused the same way; tests/integration/test_airflow_route.py triggers that one from the API
    result = dags_test(airflow_env, overrides=["experiment.test.bogus=1"])
    out = result.stdout + result.stderr
    assert "experiment.test.bogus: unknown key" in out
    assert "state=failed" in out
    assert run_folders(outputs_dir) == [] or all(not any((f / "runs").iterdir()) for f in run_folders(outputs_dir))
    assert "starting worker" not in out
    # the load, report and gate tasks that run anyway say why they have nothing to do, and do not crash
    assert "nothing was planned (plan_runs failed" in out and "TypeError" not in out


def test_a_failing_gate_fails_the_run_and_says_why_last(airflow_env, outputs_dir):
    # CUDA graphs on a host without CUDA: every run fails in its worker, with the reason in its record
    result = dags_test(airflow_env, overrides=["experiment.test.execution=cuda_graph"])
    out = result.stdout + result.stderr
    assert "state=failed" in out, out[-4000:]
    (folder,) = run_folders(outputs_dir)
    verdict = json.loads((folder / "gate.json").read_text())
    assert not verdict["passed"] and verdict["sentence"].startswith("gate FAILED: 2 of 2 run(s) failed or never ran")
    assert "needs a CUDA device" in verdict["sentence"] and "folder=" in verdict["sentence"]
    assert f"did not pass its gate: {verdict['sentence']}" in out  # the gate task's failure is the sentence
    assert count_runs(outputs_dir) == 2  # loaded and reported before the gate said no


def test_a_run_without_an_interval_over_its_trials_passes_the_gate(airflow_env, outputs_dir):
    # a time budget shorter than one trial: every run succeeds with a single trial, no 95% interval over its
    # trials; that interval is shown, never judged (it is not the noise between processes)
    result = dags_test(airflow_env, overrides=["experiment.test.max_trial_time_s=0.001"])
    out = result.stdout + result.stderr
    assert "run 2/2 ok" in out and "state=failed" not in out, out[-4000:]
    (folder,) = run_folders(outputs_dir)
    verdict = json.loads((folder / "gate.json").read_text())
    assert verdict["passed"] and verdict["sentence"] == "gate passed: 2 of 2 run(s) measured."
    assert len(verdict["intervals"]) == 2 and all("no interval over its trials (1 trial(s))" in i
                                                  for i in verdict["intervals"])
