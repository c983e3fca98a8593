"""Phase 1 end to end through the scheduler (LocalExecutor) with PostgreSQL as Airflow's metadata
database: Debian's server, a private cluster started by the test."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import CHAIN, call, dag_runs, wait_for_dags

pytestmark = pytest.mark.integration
DAG = "phase1_framework_validation"


@pytest.fixture
def airflow_extra_env(postgres):
    return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres, "AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}


def test_phase1_on_postgres(airflow, outputs_dir, postgres):
    token, log = airflow
    wait_for_dags(token, list(CHAIN))
    for dag_id in CHAIN:  # Phase 1 alone: a phase its Asset starts would still be running at teardown
        if dag_id != DAG:
            call("PATCH", f"/api/v2/dags/{dag_id}", token, {"is_paused": True})
    call("POST", f"/api/v2/dags/{DAG}/dagRuns", token, {"logical_date": None, "conf": {"experiment": "tiny"}})
    deadline = time.monotonic() + 300
    state = None
    while time.monotonic() < deadline:
        state = (dag_runs(token, DAG) or [{"state": None}])[0]["state"]
        if state in ("success", "failed"):
            break
        time.sleep(3)
    assert state == "success", log.read_text()[-3000:]
    import sqlalchemy as sa

    with sa.create_engine(postgres).connect() as con:  # the run is in PostgreSQL, not in a SQLite file
        done = con.execute(sa.text(f"select count(*) from dag_run where dag_id = '{DAG}' "
                                   "and state = 'success'")).scalar()
    assert done == 1
