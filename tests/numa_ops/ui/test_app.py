"""The plugin's app through FastAPI with real Airflow tokens: every route refuses a caller without a valid
login, no path leaves the outputs folder, and the SQL page reads only, within its limits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pytest
from airflow.api_fastapi.app import create_auth_manager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi.testclient import TestClient
from numa_ops.db import connection, snapshot
from numa_ops.ui import runs
from numa_ops.ui.app import create_app


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "numa-lab-ui-test-secret-" + "0" * 48)
    # unit tests have no migrated metadata database to hold revoked tokens (the browser test has one)
    monkeypatch.setattr("airflow.models.revoked_token.RevokedToken.is_revoked", classmethod(lambda cls, jti: False))
    return create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside outputs/ with a page that must never be served."""
    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / "airflow.html").write_text("SECRET")
    (tmp_path / "airflow.cfg").write_text("SECRET")
    return folder


@pytest.fixture
def client(outputs_dir: Path, outside: Path, token: str) -> TestClient:
    folder = outputs_dir / "tiny_20260101T000000_abcdef"
    (folder / "report").mkdir(parents=True)
    (folder / "report" / "index.html").write_text("<html>REPORT</html>")
    (folder / "plan.json").write_text(json.dumps({"phase": "phase1_baseline", "created_at": "2026-01-01T00:00:00"}))
    (folder / "experiment_summary.json").write_text(json.dumps({"planned_runs": 2, "successful_runs": 2,
                                                                "failed_runs": 0}))
    (folder / "gate.json").write_text(json.dumps({"passed": True, "summary": "all lanes measured"}))
    (outputs_dir / "escape").symlink_to(outside, target_is_directory=True)
    with duckdb.connect(str(connection.db_path())) as con:
        con.execute("CREATE TABLE runs AS SELECT 'r' || i AS run_id, i AS batch_size FROM range(5) t(i)")
    return TestClient(create_app(), headers={"Authorization": f"Bearer {token}"})


ROUTES = ["/", "/sql", "/sql.csv?q=SELECT+1", "/files/tiny_20260101T000000_abcdef/report/index.html",
          "/runs/phase1_baseline/manual__1"]


@pytest.mark.parametrize("route", ROUTES, ids=ROUTES)
def test_no_login_is_401_with_what_to_do(client, route):
    response = client.get(route, headers={"Authorization": ""})
    assert response.status_code == 401
    assert "log in to the Airflow UI" in response.json()["detail"]


@pytest.mark.parametrize("route", ROUTES, ids=ROUTES)
def test_a_forged_token_is_403(client, route):
    response = client.get(route, headers={"Authorization": "Bearer forged.token.here"})
    assert response.status_code == 403
    assert "Invalid JWT token" in response.json()["detail"]


def test_the_ui_session_cookie_logs_in(client, token):
    response = client.get("/files/tiny_20260101T000000_abcdef/report/index.html",
                          headers={"Authorization": ""}, cookies={"_token": token})
    assert response.status_code == 200 and "REPORT" in response.text


def test_a_user_without_dag_run_access_is_403(client, monkeypatch):
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    monkeypatch.setattr(SimpleAuthManager, "is_authorized_dag", lambda *a, **k: False)
    response = client.get("/")
    assert response.status_code == 403 and "may not read DAG runs" in response.json()["detail"]


TRAVERSALS = {
    "dotdot-encoded-slash": "/files/..%2F..%2Fairflow.cfg",
    "dotdot-encoded-dots": "/files/%2e%2e%2f%2e%2e%2fairflow.cfg",
    "double-encoded": "/files/%252e%252e%252f%252e%252e%252fairflow.cfg",
    "backslash": "/files/..%5C..%5Cairflow.cfg",
    "hidden": "/files/.%2E/airflow.cfg",
    "symlink-out": "/files/escape/airflow.html",
    "absolute": "/files/%2Fetc%2Fpasswd",
    "not-a-report-file": "/files/numa_lab.duckdb",
}


@pytest.mark.parametrize("url", TRAVERSALS.values(), ids=TRAVERSALS.keys())
def test_no_path_leaves_the_outputs_folder(client, url):
    response = client.get(url)
    assert response.status_code in (400, 403, 404)
    assert "SECRET" not in response.text
    assert response.json()["detail"].startswith(("refused", "not found"))


def test_a_report_is_served_read_only(client):
    url = "/files/tiny_20260101T000000_abcdef/report/index.html"
    assert client.get(url).text == "<html>REPORT</html>"
    assert client.put(url, content="x").status_code == 405
    assert client.delete(url).status_code == 405


def test_nav_page_lists_folders_with_summary_and_verdict(client):
    page = client.get("/").text
    assert "tiny_20260101T000000_abcdef" in page and "all lanes measured" in page
    assert "tiny_20260101T000000_abcdef/report/index.html" in page


def test_a_dag_runs_tab_opens_its_report(client, outputs_dir):
    digest = hashlib.sha1(b"tiny|phase1_baseline|manual__1").hexdigest()[:6]
    folder = outputs_dir / f"tiny_20260101T000000_{digest}"
    (folder / "report").mkdir(parents=True)
    (folder / "report" / "index.html").write_text("THIS RUN")
    (folder / "plan.json").write_text(json.dumps({"phase": "phase1_baseline"}))
    assert runs.folders_of_run("phase1_baseline", "manual__1", outputs_dir) == [folder.name]
    response = client.get("/runs/phase1_baseline/manual__1")
    assert response.status_code == 200 and response.text == "THIS RUN"
    assert client.get("/runs/phase1_baseline/manual__2").status_code == 404


def test_a_preset_query_runs_and_downloads_as_csv(client):
    page = client.get("/sql", params={"q": "SELECT run_id FROM runs ORDER BY batch_size", "limit": 2})
    assert page.status_code == 200 and "r0" in page.text and "r1" in page.text and "r2" not in page.text
    csv = client.get("/sql.csv", params={"q": "SELECT run_id FROM runs ORDER BY batch_size"})
    assert csv.text.splitlines() == ["run_id", "r0", "r1", "r2", "r3", "r4"]


HOSTILE = {
    "read-file": "SELECT * FROM read_csv('/etc/passwd')",
    "read-text": "SELECT * FROM read_text('{outside}/airflow.html')",
    "write": "CREATE TABLE x AS SELECT 1",
    "insert": "INSERT INTO runs VALUES ('x', 1)",
    "attach": "ATTACH '{outside}/new.duckdb' AS other",
    "copy-to": "COPY runs TO '{outside}/out.csv'",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "set": "SET enable_external_access = true",
    "two-statements": "SELECT 1; DROP TABLE runs",
    "bad-sql": "SELEC nothing",
}


@pytest.mark.parametrize("query", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_query_is_refused_with_a_message(client, outside, query):
    client.get("/sql", params={"q": "SELECT 1"})  # the copy and its lock exist before the hostile query
    before = sorted(p.name for p in outside.parent.rglob("*"))
    response = client.get("/sql.csv", params={"q": query.format(outside=outside)})
    assert response.status_code == 400
    assert response.json()["detail"]
    assert "root:" not in response.text and "SECRET" not in response.text
    assert sorted(p.name for p in outside.parent.rglob("*")) == before
    with duckdb.connect(str(connection.db_path()), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (5,)


def test_a_query_past_the_time_limit_is_stopped(client):
    response = client.get("/sql.csv", params={"q": "SELECT count(*) FROM range(100000000000) a", "timeout_s": 0.2})
    assert response.status_code == 400 and "time limit" in response.json()["detail"]


def test_the_sql_page_publishes_a_copy_once_if_none_exists(client):
    assert not snapshot.snapshot_path(connection.db_path()).exists()
    assert client.get("/sql", params={"q": "SELECT 1"}).status_code == 200
    assert snapshot.snapshot_path(connection.db_path()).is_file()
