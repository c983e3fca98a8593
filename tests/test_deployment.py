"""docker-compose.yaml, .env.example and the Dockerfile have what a GPU host needs: Airflow's official
layout, GPUs and SYS_NICE where tasks run, health checks, the project's folders mounted, the Celery
profile's per-host queues, and no password written into the files. Checked on the YAML as written and,
where Debian's docker-compose is installed, on the configuration as Compose resolves it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yaml"
CORE = {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
        "airflow-triggerer"}
CELERY = {"redis", "airflow-worker", "airflow-worker-gpu-a"}
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|JWT|REQUIREPASS", re.I)


def _as_written() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _resolved(profiles: list[str]) -> dict[str, Any]:
    exe = shutil.which("docker-compose")
    if not exe:
        pytest.skip("needs Debian's docker-compose (./numa-lab test installs it when run as root)")
    argv = [exe, "-f", str(COMPOSE), "--env-file", str(REPO / ".env.example")]
    argv += [arg for profile in profiles for arg in ("--profile", profile)]
    out = subprocess.run([*argv, "config"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


@pytest.fixture(params=["as written", "resolved", "resolved celery"])
def compose(request) -> dict[str, Any]:
    """The file as written, and as Compose reads it offline with .env.example (``docker-compose config``: a file
    it cannot read fails here): one GPU host, and the Celery deployment with its template GPU host."""
    if request.param == "as written":
        return _as_written()
    return _resolved(["celery", "gpu-a"] if "celery" in request.param else [])


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(e.split("=", 1) for e in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> str:
    cmd = service.get("command") or ""
    return " ".join(cmd) if isinstance(cmd, list) else cmd


def _task_runners(services: dict[str, Any]) -> list[str]:
    """The scheduler (LocalExecutor) and every Celery worker of a GPU host (not the default queue's)."""
    gpu_workers = [n for n, s in services.items()
                   if "celery worker" in _command(s) and "--queues default" not in _command(s)]
    return ["airflow-scheduler", *gpu_workers]


def test_official_layout(compose):
    services = compose["services"]
    assert CORE <= set(services)
    if "redis" in services or "x-airflow-common" in compose:
        assert CELERY <= set(services)
    env = _env(services["airflow-scheduler"])
    assert env["AIRFLOW__CORE__EXECUTOR"] in ("LocalExecutor", "${NUMA_LAB_EXECUTOR:-LocalExecutor}")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]  # one secret for every service: workers' tokens verify
    init = _command(services["airflow-init"])
    assert "airflow db migrate" in init and "passwords.json" in init
    for name in CORE - {"postgres", "airflow-init"}:
        depends = services[name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
    assert any(str(p).endswith(":8080") or p == "8080" for p in _ports(services["airflow-apiserver"]))


def _ports(service: dict[str, Any]) -> list[str]:
    out = []
    for p in service.get("ports", []):
        out.append(f"{p.get('published')}:{p['target']}" if isinstance(p, dict) else str(p).removesuffix("/tcp"))
    return out


def test_long_running_services_have_health_checks(compose):
    for name, service in compose["services"].items():
        if name in ("airflow-init", "airflow-cli"):
            continue
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no health check"


def test_gpus_and_sys_nice_where_tasks_run(compose):
    services = compose["services"]
    runners = _task_runners(services)
    assert "airflow-worker-gpu-a" in runners
    for name in runners:
        service = services[name]
        assert service["hostname"], name  # records name the host, not a container id
        assert "SYS_NICE" in service.get("cap_add", []), name
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and d["capabilities"] == ["gpu"] and d["count"] == "all"
                   for d in devices), name


def test_folders_are_mounted_where_numa_lab_looks(compose):
    for name, service in compose["services"].items():
        if not name.startswith("airflow-"):
            continue
        targets = {}
        for v in service["volumes"]:
            if isinstance(v, dict):
                targets[v["target"]] = v["source"]
            else:  # SOURCE:TARGET[:MODE], where SOURCE may be ${VAR:-default}
                source, target = re.fullmatch(r"(\$\{[^}]*\}|[^:]+):([^:]+)(:\w+)?", v).group(1, 2)
                targets[target] = source
        for folder in ("dags", "plugins", "include", "outputs"):
            assert f"/opt/airflow/{folder}" in targets, (name, folder)
        env = _env(service)
        assert env["NUMA_LAB_OUTPUTS"] == "/opt/airflow/outputs"
        assert env["NUMA_LAB_CONFIGS"] == "/opt/airflow/include/configs"
        assert env["NUMA_LAB_NSYS"].startswith("/opt/nsys/") and "/opt/nsys" in targets
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"


def test_each_gpu_host_worker_listens_on_its_own_queue(compose):
    services = compose["services"]
    for name in _task_runners(services)[1:]:
        service = services[name]
        queues = re.search(r"--queues (\S+)", _command(service)).group(1)
        assert queues == service["hostname"], name  # the queue is named for the host that serves it
        assert service["profiles"] == [queues], name  # started on that host alone
        assert "/opt/airflow/outputs/.locks" in service["tmpfs"]  # device locks stay per host
    assert services["redis"]["profiles"] == ["celery"]
    assert "--queues default" in _command(services["airflow-worker"])


def _strings(node: Any, path: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")
    elif node is not None:
        yield path, str(node)


def test_no_literal_passwords():
    text = COMPOSE.read_text()
    for path, value in _strings(yaml.safe_load(text)):
        name = path.rsplit(".", 1)[-1]
        if SECRET_NAME.search(name) and not name.endswith("_FILE"):
            assert REQUIRED.fullmatch(value), f"{path} = {value!r}: take it from .env with ${{VAR:?}}"
        for credential in re.findall(r"://[^:/@\s]*:([^@\s]+)@", value):  # user:password@ in URLs
            assert REQUIRED.fullmatch(credential), f"{path}: password in a URL: {credential!r}"
    redis = " ".join(yaml.safe_load(text)["services"]["redis"]["command"])
    assert REQUIRED.fullmatch(redis.split("--requirepass ", 1)[1])
    assert not re.search(r"(?i)password\s*[:=]\s*['\"]?(airflow|admin|postgres|redis|secret)\b", text)


def test_env_example_provides_every_required_variable():
    required = {name for _, value in _strings(_as_written()) for name in REQUIRED.findall(value)}
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_JWT_SECRET"} <= required
    example = dict(
        line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required <= set(example)
    for name in required:
        if SECRET_NAME.search(name) or name.endswith("_KEY"):
            assert example[name] == "CHANGE-ME", name  # a placeholder, never a usable password


def test_env_is_not_committed():
    if not (REPO / ".git").exists():
        pytest.skip("needs a git checkout")
    assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO).returncode == 0


def test_dockerfile():
    text = (REPO / "Dockerfile").read_text()
    image = re.search(r"^ARG AIRFLOW_IMAGE=(\S+)$", text, re.M).group(1)
    assert image.startswith("apache/airflow:") and "3.3.2" in image
    assert re.search(r"apt-get install .*numactl", text)
    assert "-r /opt/numa-lab/requirements.txt -c /opt/numa-lab/constraints.txt" in text and "pip check" in text
    assert "NUMA_LAB_NSYS=/opt/nsys/bin/nsys" in text
    assert re.findall(r"^USER (\S+)$", text, re.M)[-1] == "airflow"  # back to the airflow user after apt
    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines() if "==" in line)
    assert pins["apache-airflow"] == "3.3.2" and pins["torch"] == "2.14.1"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "outputs", ".env"} <= set(ignored)


def test_every_published_port_answers_on_localhost_unless_told(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            bound = port.get("host_ip") == "127.0.0.1" if isinstance(port, dict) else (
                str(port).startswith("127.0.0.1:") or (str(port).startswith("${") and ":-127.0.0.1}:" in str(port)))
            assert bound, f"{name} publishes {port} on every interface"


def test_the_numa_lab_script_parses_and_names_every_command():
    """``./numa-lab`` is bash: a broken case branch would break every command the README gives."""
    assert subprocess.run(["bash", "-n", str(REPO / "numa-lab")], capture_output=True, text=True).returncode == 0
    text = (REPO / "numa-lab").read_text()
    branches = re.findall(r"^  ([a-z-]+)\)$", text, re.M)
    assert branches == ["quickstart", "test", "run", "compare", "predict", "rerun", "rehearse-numa", "airflow"]
    usage = subprocess.run([str(REPO / "numa-lab"), "help"], capture_output=True, text=True, timeout=60).stdout
    for command in branches:
        assert f"./numa-lab {command}" in usage
