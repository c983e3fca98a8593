"""Phase 1 through Airflow's CeleryExecutor, routed to a GPU host's queue: Debian's Redis as the broker,
PostgreSQL as the metadata database and result backend, and two Celery workers started here, one on
this host's queue and one on the default queue, as docker-compose.yaml's ``celery`` profile runs them.
The host's tasks must run on its queue (and so on its worker alone), and every record must name it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import PHASES, _live_members, airflow_env, free_port

pytestmark = pytest.mark.integration
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG = "phase1_framework_validation"
HOST = socket.gethostname()
QUEUE = re.sub(r"[^A-Za-z0-9_-]", "-", HOST.split(".")[0])[:63]


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A process in a session (and process group) of its own, logging to ``log``."""
    with log.open("w") as fh:
        return subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> list[str]:
    """SIGTERM to each process group, SIGKILL after 30 s; the group members still alive afterwards."""
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    survivors: list[str] = []
    for _ in range(20):
        survivors = [line for proc in procs for line in _live_members(proc.pid)]
        if not survivors:
            break
        time.sleep(1)
    return survivors


@pytest.fixture
def redis_url(tmp_path):
    """Debian's redis-server on a free port, no persistence; yields the broker URL."""
    server = shutil.which("redis-server")
    if not server:
        pytest.skip("needs redis-server (./numa-lab test installs it when run as root)")
    port = free_port()
    proc = _start([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(tmp_path)], dict(os.environ), tmp_path / "redis.log")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "redis.log").read_text()
            time.sleep(0.5)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        assert not _stop([proc])


def _token(base: str, password: str, deadline: float, procs: dict[str, subprocess.Popen], logs: Path) -> str:
    """The admin's API token, once the API server answers; fails early if a component exited."""
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited:\n" + (logs / f"{name}.log").read_text()[-3000:]
        try:
            req = urllib.request.Request(f"{base}/auth/token", method="POST",
                                         data=json.dumps({"username": "admin", "password": password}).encode())
            req.add_header("Content-Type", "application/json")
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())["access_token"]
        except OSError:
            time.sleep(2)
    raise AssertionError("the API server did not answer in time")


def _api(base: str, method: str, path: str, token: str, body: dict | None = None) -> object:
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def test_phase1_runs_on_the_hosts_celery_queue(tmp_path, configs_dir, outputs_dir, postgres, redis_url):
    (configs_dir / "phases.yaml").write_text(PHASES.format(name=DAG, after="[]"))
    home = tmp_path / "airflow"
    home.mkdir()
    # the admin user and password as docker-compose.yaml's airflow-init writes them from .env
    password = "test-" + os.urandom(8).hex()
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    port = free_port()
    base = f"http://localhost:{port}"
    env = {
        **airflow_env(home, port),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres,
        "AIRFLOW__CELERY__BROKER_URL": redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{postgres}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(16).hex(),
        "NUMA_LAB_HOSTS": QUEUE,
        "PYTHONWARNINGS": "ignore",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    logs = tmp_path / "logs"
    logs.mkdir()
    argvs = {
        "api-server": [AIRFLOW, "api-server", "--port", str(port), "--workers", "1"],
        "scheduler": [AIRFLOW, "scheduler"],
        "dag-processor": [AIRFLOW, "dag-processor"],
        # one worker per GPU host, on the queue named for it; one for the light tasks on the default queue
        "worker-host": [AIRFLOW, "celery", "worker", "--queues", QUEUE, "--celery-hostname", f"{QUEUE}@%h",
                        "--concurrency", "2", "--skip-serve-logs"],
        "worker-default": [AIRFLOW, "celery", "worker", "--queues", "default", "--celery-hostname", "default@%h",
                           "--concurrency", "1", "--skip-serve-logs"],
    }
    procs = {name: _start(argv, env, logs / f"{name}.log") for name, argv in argvs.items()}
    try:
        token = _token(base, password, time.monotonic() + 180, procs, logs)
        deadline = time.monotonic() + 120
        while DAG not in {d["dag_id"] for d in _api(base, "GET", "/api/v2/dags", token)["dags"]}:
            assert time.monotonic() < deadline, "the DAG processor did not parse the DAG"
            time.sleep(3)
        _api(base, "PATCH", f"/api/v2/dags/{DAG}", token, {"is_paused": False})
        run = _api(base, "POST", f"/api/v2/dags/{DAG}/dagRuns", token,
                   {"logical_date": None, "conf": {"experiment": "tiny", "hosts": [QUEUE]}})
        deadline = time.monotonic() + 300
        state = None
        while time.monotonic() < deadline:
            state = _api(base, "GET", f"/api/v2/dags/{DAG}/dagRuns/{run['dag_run_id']}", token)["state"]
            if state in ("success", "failed"):
                break
            time.sleep(3)
        tis = _api(base, "GET", f"/api/v2/dags/{DAG}/dagRuns/{run['dag_run_id']}/taskInstances?limit=100", token)
        tis = {(t["task_id"], t["map_index"]): t for t in tis["task_instances"]}
        detail = "\n".join(f"{k}: {t['state']} queue={t['queue']}" for k, t in sorted(tis.items(), key=str))
        worker_logs = {n: (logs / f"{n}.log").read_text() for n in ("worker-host", "worker-default", "scheduler")}
        assert state == "success", f"{state}\n{detail}\n" + "\n".join(
            f"--- {n}\n{t[-2500:]}" for n, t in worker_logs.items())
    finally:
        survivors = _stop(list(procs.values()))
    assert not survivors, f"processes survived SIGTERM to their groups: {survivors}"

    # every task ran, on the queue it was routed to: the host's discovery, plan and lanes on its queue
    host_tasks = {f"{QUEUE}.discover_topology", f"{QUEUE}.plan_runs", f"{QUEUE}.measure"}
    assert {task for task, _ in tis} == host_tasks | {"load_duckdb", "report", "gate"}
    for (task, _), ti in tis.items():
        assert ti["state"] == "success", detail
        assert ti["queue"] == (QUEUE if task in host_tasks else "default"), detail
    # ...and so on that queue's worker alone (each worker logs the workloads it executes)
    executed = {n: set(re.findall(r"task_id='([^']+)'", worker_logs[n])) for n in ("worker-host", "worker-default")}
    assert executed["worker-host"] == host_tasks, executed
    assert executed["worker-default"] == {"load_duckdb", "report", "gate"}, executed

    # the host's folder, its topology and every run record name the host
    folders = [p for p in outputs_dir.iterdir() if (p / "runs").is_dir()]
    assert len(folders) == 1 and folders[0].name.endswith(f"_{QUEUE}")
    assert json.loads((folders[0] / "topology.json").read_text())["host"] == HOST
    records = [json.loads(p.read_text()) for p in (folders[0] / "runs").glob("*.json")]
    assert len(records) == 2 and all(r["success"] for r in records)
    assert {r["environment"]["host"] for r in records} == {HOST}
    import duckdb

    with duckdb.connect(str(outputs_dir / "numa_lab.duckdb"), read_only=True) as con:
        assert con.execute("SELECT DISTINCT host FROM runs").fetchall() == [(HOST,)]
