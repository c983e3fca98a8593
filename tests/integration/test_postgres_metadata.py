"""Phase 1 end to end through the scheduler (LocalExecutor) with PostgreSQL as Airflow's metadata
database: Debian's server, a private cluster started by the test."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from tests.integration.conftest import call, dag_runs, wait_for_dags

pytestmark = pytest.mark.integration
DAG = "phase1_framework_validation"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdb or os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs Debian's postgresql package and root (.ci/run installs it)")
    bindir = os.path.dirname(initdb[-1])
    data = tempfile.mkdtemp(prefix="numa-lab-pg-", dir="/tmp")
    shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, f"{bindir}/initdb", "-D", data, "--auth=trust", "-U", "postgres"], check=True, capture_output=True)
    subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", data, "-o", f"-p {port} -k {data} -c listen_addresses=localhost",
                    "-l", f"{data}/server.log", "-w", "start"], check=True, capture_output=True)
    try:
        sql = "CREATE USER airflow PASSWORD 'airflow'; CREATE DATABASE airflow OWNER airflow;"
        for statement in sql.split(";")[:2]:
            subprocess.run([*as_pg, f"{bindir}/psql", "-h", data, "-p", str(port), "-c", statement], check=True, capture_output=True)
        yield f"postgresql+psycopg2://airflow:airflow@localhost:{port}/airflow"
    finally:
        subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def airflow_extra_env(postgres):
    return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres, "AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}


def test_phase1_on_postgres(airflow, outputs_dir, postgres):
    token, log = airflow
    wait_for_dags(token, [DAG])
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
        done = con.execute(sa.text(f"select count(*) from dag_run where dag_id = '{DAG}' and state = 'success'")).scalar()
    assert done == 1
