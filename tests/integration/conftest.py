"""A real Airflow for end-to-end tests: ``airflow standalone`` (scheduler, API server, DAG processor,
triggerer; SQLite) in a private home, stopped through its process group."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PORT = int(os.environ.get("NUMA_LAB_TEST_AIRFLOW_PORT", "8080"))
BASE = f"http://localhost:{PORT}"

PHASES = """
{name}:
  title: "{name}"
  goal: tiny chain test
  question: does the chain run?
  after: {after}
  max_lanes: 2
  gate: {{max_failure_rate: 0.0}}
  studies:
    tiny: {{experiment: tiny}}
"""
CHAIN = {
    "phase1_framework_validation": [],
    "phase2_numa_locality": ["phase1_framework_validation"],
    "phase3_scaling": ["phase1_framework_validation"],
    "phase4_memory_transfer": ["phase2_numa_locality"],
    "phase5_compilation": ["phase3_scaling"],
    "phase6_production": ["phase2_numa_locality", "phase3_scaling", "phase4_memory_transfer", "phase5_compilation"],
    "nightly_sweep": [],
}


def call(method, path, token=None, body=None, base=BASE):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def free_port() -> int:
    """A TCP port free on localhost right now."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A private PostgreSQL cluster (Debian's server, as root); yields its SQLAlchemy URL."""
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdb or os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root and Debian's postgresql (./numa-lab test installs it when run as root)")
    bindir = os.path.dirname(initdb[-1])
    data = tempfile.mkdtemp(prefix="numa-lab-pg-", dir="/tmp")
    shutil.chown(data, "postgres", "postgres")
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, f"{bindir}/initdb", "-D", data, "--auth=trust", "-U", "postgres"], check=True,
                   capture_output=True)
    subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", data, "-o", f"-p {port} -k {data} -c listen_addresses=localhost",
                    "-l", f"{data}/server.log", "-w", "start"], check=True, capture_output=True)
    try:
        sql = "CREATE USER airflow PASSWORD 'airflow'; CREATE DATABASE airflow OWNER airflow;"
        for statement in sql.split(";")[:2]:
            subprocess.run([*as_pg, f"{bindir}/psql", "-h", data, "-p", str(port), "-c", statement], check=True,
                           capture_output=True)
        yield f"postgresql+psycopg2://airflow:airflow@localhost:{port}/airflow"
    finally:
        subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def airflow_env(home: Path, port: int) -> dict[str, str]:
    """The environment of an Airflow under test: this repo's DAGs and plugins, fast polling, on ``port``."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__PORT": str(port),
        # the log servers on free ports too: two Airflows of two test processes may run at once
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
    }


@pytest.fixture
def airflow_extra_env():
    """Extra environment for the Airflow under test (a test may override this fixture)."""
    return {}


@pytest.fixture
def airflow(tmp_path, configs_dir, outputs_dir, airflow_extra_env):
    (configs_dir / "phases.yaml").write_text("".join(PHASES.format(name=n, after=json.dumps(a))
                                                     for n, a in CHAIN.items()))
    home = tmp_path / "airflow"
    env = {
        **airflow_env(home, PORT),
        "PYTHONWARNINGS": "ignore",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone runs `airflow`
        **airflow_extra_env,
    }
    with standalone([AIRFLOW, "standalone"], env, home, tmp_path / "standalone.log") as token:
        yield token, tmp_path / "standalone.log"


@contextmanager
def standalone(argv, env, home, log_path, base=BASE, timeout=180):
    """Start ``argv`` (an ``airflow standalone``) in a session of its own; yield an API token; stop its group."""
    log = log_path.open("w")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        token = None
        while time.monotonic() < deadline and token is None:
            time.sleep(2)
            pw_file = home / "simple_auth_manager_passwords.json.generated"
            if proc.poll() is not None:
                raise AssertionError("airflow standalone exited:\n" + log_path.read_text()[-3000:])
            if not pw_file.exists():
                continue
            try:
                user, password = next(iter(json.loads(pw_file.read_text()).items()))
                token = call("POST", "/auth/token", body={"username": user, "password": password},
                             base=base)["access_token"]
            except (OSError, ValueError, StopIteration):
                continue
        assert token, f"the API server did not answer in {timeout} s:\n" + log_path.read_text()[-3000:]
        yield token
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        survivors = _live_members(proc.pid)
        for _ in range(20):
            if not survivors:
                break
            time.sleep(1)
            survivors = _live_members(proc.pid)
        if survivors:  # fail, but leave nothing running behind
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        assert not survivors, f"processes of airflow standalone survived SIGTERM to its group: {survivors}"


def _live_members(pgid: int) -> list[str]:
    """Processes of the group that still run (zombies waiting for a reaper do not count)."""
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.split()[1:2] and not line.split()[1].startswith("Z")]


def dag_runs(token, dag_id, base=BASE):
    return call("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after", token, base=base)["dag_runs"]


def refusal(method, path, token, body, base=BASE):
    """The HTTP status and detail of a request the API refuses (None, None if it was accepted)."""
    try:
        call(method, path, token, body, base=base)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null").get("detail")
    return None, None


def wait_for_dags(token, dag_ids, timeout=120, base=BASE):
    """Wait until the DAG processor has parsed ``dag_ids``, then unpause them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            dags = {d["dag_id"] for d in call("GET", "/api/v2/dags?limit=100", token, base=base)["dags"]}
        except OSError:
            dags = set()
        if set(dag_ids) <= dags:
            break
        time.sleep(3)
    for dag_id in dag_ids:
        call("PATCH", f"/api/v2/dags/{dag_id}", token, {"is_paused": False}, base=base)


