"""The plugin's app through HTTP with real Airflow JWTs: what a logged-in user gets, and every hostile
request refused with its status and a message that says why."""

from __future__ import annotations

import pytest

from tests.numa_ops.ui.conftest import DAG_ID, RUN_ID, SECRET


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PAGES = ["/numa-lab/", f"/numa-lab/runs/{DAG_ID}/{RUN_ID}", "/numa-lab/files/report/index.html",
         "/numa-lab/sql?q=SELECT+1", "/numa-lab/sql.csv?q=SELECT+1"]


@pytest.mark.parametrize("path", PAGES, ids=["folders", "run", "file", "sql", "csv"])
@pytest.mark.parametrize(("credential", "status", "words"), [
    (None, 401, "Not authenticated: log in to the Airflow UI first"),
    ("garbage", 403, "Invalid JWT token"),
    ("expired", 401, "Token Expired"),
    ("no_role", 403, "may not read DAG runs"),
], ids=["no-login", "bad-token", "expired-token", "no-permission"])
def test_without_a_valid_login_nothing_is_served(auth_client, tokens, path, credential, status, words):
    headers = {} if credential is None else bearer(tokens.get(credential, "not.a.jwt"))
    resp = auth_client.get(path, headers=headers, follow_redirects=False)
    assert resp.status_code == status and words in resp.json()["detail"], resp.text


def test_the_session_cookie_of_the_ui_is_a_login(auth_client, tokens):
    resp = auth_client.get("/numa-lab/", cookies={"_token": tokens["viewer"]})
    assert resp.status_code == 200 and "numa-lab: run folders" in resp.text


def test_the_folders_page_lists_each_folder_with_its_summary_and_gate(auth_client, tokens, outputs):
    page = auth_client.get("/numa-lab/", headers=bearer(tokens["viewer"])).text
    (name,) = [p.name for p in outputs.glob("phase1_*")]
    assert f'href="/numa-lab/files/{name}/report/index.html"' in page
    assert 'href="/numa-lab/files/report/index.html"' in page and "gate passed: 0/1 runs failed" in page
    assert DAG_ID in page


def test_a_dag_runs_page_opens_its_report(auth_client, tokens):
    resp = auth_client.get(f"/numa-lab/runs/{DAG_ID}/{RUN_ID}", headers=bearer(tokens["viewer"]))
    assert resp.status_code == 200 and "run report" in resp.text
    assert resp.url.path.startswith("/numa-lab/files/phase1_") and resp.url.path.endswith("/report/index.html")


def test_a_run_without_a_folder_says_so(auth_client, tokens):
    resp = auth_client.get(f"/numa-lab/runs/{DAG_ID}/manual__other", headers=bearer(tokens["viewer"]))
    assert resp.status_code == 404 and "No numa-lab run folder" in resp.text


def test_a_png_is_served_as_an_image(auth_client, tokens, outputs):
    (name,) = [p.name for p in outputs.glob("phase1_*")]
    resp = auth_client.get(f"/numa-lab/files/{name}/report/throughput.png", headers=bearer(tokens["viewer"]))
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"


@pytest.mark.parametrize(("path", "status", "words"), [
    ("/numa-lab/files/%2e%2e%2fairflow.cfg", 400, "not a plain path inside the outputs folder"),
    ("/numa-lab/files/%2e%2e/%2e%2e/airflow.cfg", 400, "not a plain path"),
    ("/numa-lab/files/..%2Fairflow.cfg", 400, "not a plain path"),
    ("/numa-lab/files/%252e%252e%252fairflow.cfg", 400, "not a plain path"),
    ("/numa-lab/files/report%2F..%2F..%2Fairflow.cfg", 400, "not a plain path"),
    ("/numa-lab/files/escape.html", 403, "leads outside the outputs folder"),
    ("/numa-lab/files/up/airflow.cfg", 403, "leads outside the outputs folder"),
    ("/numa-lab/files/numa_lab.duckdb", 403, "only .csv, .html"),
    ("/numa-lab/files/.hidden.json", 400, "hidden"),
    ("/numa-lab/files/nothing.html", 404, "not found"),
    ("/numa-lab/files/latest.json", 403, "latest.json holds the server's own paths and is not served"),
], ids=["encoded", "encoded-parts", "encoded-slash", "double-encoded", "report-then-up", "symlink-file",
        "symlink-folder", "database-file", "hidden", "missing", "latest-json"])
def test_hostile_paths_are_refused(auth_client, tokens, path, status, words):
    resp = auth_client.get(path, headers=bearer(tokens["viewer"]))
    assert resp.status_code == status and words in resp.json()["detail"], resp.text
    assert SECRET not in resp.text


def test_the_sql_page_shows_a_preset_as_a_table_and_csv(auth_client, tokens):
    page = auth_client.get("/numa-lab/sql", headers=bearer(tokens["viewer"])).text
    assert "failed runs and why" in page  # a preset from docs/database.md
    q = "SELECT run_id, success FROM runs"
    resp = auth_client.get("/numa-lab/sql", params={"q": q}, headers=bearer(tokens["viewer"]))
    assert resp.status_code == 200 and "<table id=result>" in resp.text and "1 row(s)" in resp.text
    csv = auth_client.get("/numa-lab/sql.csv", params={"q": q}, headers=bearer(tokens["viewer"]))
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.splitlines()[0] == "run_id,success"


def test_the_row_limit_is_kept_and_said(auth_client, tokens):
    resp = auth_client.get("/numa-lab/sql", params={"q": "SELECT * FROM range(50)", "limit": 7},
                           headers=bearer(tokens["viewer"]))
    assert "7 row(s) (first 7; more rows were left out)" in resp.text


@pytest.mark.parametrize(("sql", "words"), [
    ("SELECT * FROM read_csv('{cfg}')", "file system operations are disabled"),
    ("SELECT * FROM '{csv}'", "file system operations are disabled"),
    ("COPY runs TO '{out}'", "only SELECT queries run here (statement type: COPY)"),
    ("CREATE TABLE x AS SELECT 1", "statement type: CREATE"),
    ("DELETE FROM runs", "statement type: DELETE"),
    ("ATTACH '{out}' AS x", "statement type: ATTACH"),
    ("INSTALL httpfs", "statement type: LOAD"),
    ("LOAD httpfs", "statement type: LOAD"),
    ("SET enable_external_access = true", "statement type: SET"),
    ("SELECT 1; COPY runs TO '{out}'", "one statement at a time"),
    ("SELEC 1", "does not parse"),
    ("SELECT no_such_column FROM runs", "no_such_column"),
], ids=["read-file", "read-file-by-name", "copy-to", "create", "delete", "attach", "install", "load",
        "unlock-config", "second-statement", "syntax", "bad-column"])
def test_hostile_or_bad_queries_are_refused(auth_client, tokens, tmp_path, sql, words):
    sql = sql.format(cfg=tmp_path / "airflow.cfg", csv=tmp_path / "secret.csv", out=tmp_path / "out.csv")
    resp = auth_client.get("/numa-lab/sql", params={"q": sql}, headers=bearer(tokens["viewer"]))
    assert resp.status_code == 400 and words in resp.text, resp.text
    assert SECRET not in resp.text and not (tmp_path / "out.csv").exists()
    csv = auth_client.get("/numa-lab/sql.csv", params={"q": sql}, headers=bearer(tokens["viewer"]))
    assert csv.status_code == 400 and words in csv.json()["detail"]


def test_a_query_past_the_time_limit_is_stopped_whatever_it_was_doing(auth_client, tokens):
    resp = auth_client.get("/numa-lab/sql", params={"q": "SELECT count(*) FROM range(10000000000000)", "timeout_s": 1},
                           headers=bearer(tokens["viewer"]))
    assert resp.status_code == 400 and "stopped after the time limit of 1 s" in resp.text


@pytest.mark.parametrize("sql", [
    "EXPLAIN ANALYZE COPY runs TO '{out}'",
    "EXPLAIN COPY runs TO '{out}'",
    "explain analyse INSTALL httpfs",
    "EXPLAIN (FORMAT json) SET enable_external_access = true",
    "/* lead */ EXPLAIN -- a comment\n ANALYZE /* another */ COPY runs TO '{out}'",
    "EXPLAIN ANALYZE DELETE FROM runs",
    "EXPLAIN CREATE TABLE x AS SELECT 1",
], ids=["analyze-copy", "copy", "analyse-install", "format-set", "comments-copy", "analyze-delete", "create"])
def test_explain_is_looked_inside(auth_client, tokens, tmp_path, sql):
    resp = auth_client.get("/numa-lab/sql.csv", params={"q": sql.format(out=tmp_path / "out.csv")},
                           headers=bearer(tokens["viewer"]))
    assert resp.status_code == 400 and "refused" in resp.json()["detail"], resp.text
    assert not (tmp_path / "out.csv").exists()


def test_explain_of_a_select_runs(auth_client, tokens):
    resp = auth_client.get("/numa-lab/sql.csv", params={"q": "EXPLAIN ANALYZE SELECT count(*) FROM runs"},
                           headers=bearer(tokens["viewer"]))
    assert resp.status_code == 200 and resp.text.startswith("explain_key,explain_value")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_gigabyte_answer_is_refused_and_the_server_stays_small(auth_client, tokens):
    before = _peak_rss_mb()
    q = "select repeat('x', 10000000) as big from range(100)"
    for path in ("/numa-lab/sql", "/numa-lab/sql.csv"):
        resp = auth_client.get(path, params={"q": q, "timeout_s": 60}, headers=bearer(tokens["viewer"]))
        refused = ("needs more than the 1024 MB of memory a query may use here", "stopped after the time limit of 60 s")
        assert resp.status_code == 400 and any(r in resp.text for r in refused), resp.text[:300]
        assert len(resp.content) < 2**20
    assert _peak_rss_mb() - before < 256  # 1 GB would have passed through the server's own memory


@pytest.mark.parametrize(("path", "cap_mb", "rows"), [("/numa-lab/sql", 4, 2), ("/numa-lab/sql.csv", 16, 8)],
                         ids=["page", "csv"])
def test_a_large_answer_is_cut_at_its_byte_cap_and_says_so(auth_client, tokens, path, cap_mb, rows):
    q = "select repeat('x', 2000000) as big from range(100)"
    resp = auth_client.get(path, params={"q": q, "timeout_s": 60}, headers=bearer(tokens["viewer"]))
    assert resp.status_code == 200 and len(resp.content) < (cap_mb + 1) * 2**20
    said = f"cut at the {cap_mb} MB an answer may hold, after {rows} row(s)"
    assert said in resp.text
    if path.endswith(".csv"):
        lines = resp.text.splitlines()
        assert lines[0] == "big" and len(lines) == 1 + rows + 1 and lines[-1].startswith(f"# cut: {said}")
        assert said in resp.headers["X-Numa-Lab-Cut"]


def test_a_csv_cut_at_the_row_limit_has_its_header_and_a_marker(auth_client, tokens):
    resp = auth_client.get("/numa-lab/sql.csv", params={"q": "SELECT range AS i FROM range(50)", "limit": 3},
                           headers=bearer(tokens["viewer"]))
    assert resp.text.splitlines() == ["i", "0", "1", "2",
                                      "# cut: more rows than the row limit of 3: only the first 3 are here"]


def test_a_whole_csv_has_no_marker(auth_client, tokens):
    resp = auth_client.get("/numa-lab/sql.csv", params={"q": "SELECT range AS i FROM range(3)"},
                           headers=bearer(tokens["viewer"]))
    assert resp.text.splitlines() == ["i", "0", "1", "2"] and "X-Numa-Lab-Cut" not in resp.headers


@pytest.mark.parametrize("sql", [
    "SELECT path FROM duckdb_databases()",
    "SELECT name, value FROM duckdb_settings() WHERE value LIKE '%/%'",
    "SELECT * FROM read_text('{outputs}/report/index.html')",
], ids=["database-path", "settings", "error-message"])
def test_no_absolute_server_path_in_an_answer(auth_client, tokens, outputs, sql):
    from pathlib import Path

    page = auth_client.get("/numa-lab/sql", params={"q": sql.format(outputs=outputs.resolve())},
                           headers=bearer(tokens["viewer"])).text
    answer = page.split("<h2>", 1)[1]  # the answer, below the form that echoes the query
    assert "&lt;outputs&gt;" in answer or "~" in answer
    assert str(outputs.resolve()) not in answer and str(Path.home()) not in answer


def _refused_folder(outputs, run_id: str = "manual__refused") -> str:
    """A run folder planned by ``phase_tasks.plan_runs`` for ``run_id`` and refused over its budget."""
    from datetime import UTC, datetime

    from numa_ops import results
    from numa_ops.run_folder import make as folder_name

    name = folder_name("phase1", datetime(2026, 11, 29, 6, tzinfo=UTC), token=f"{DAG_ID}|{run_id}")
    results.write_json_atomic(outputs / name / "plan.json", {
        "phase": DAG_ID, "dag_run": run_id, "created_at": "2026-11-29T06:00:01+00:00", "runs": 3840,
        "params": {"overrides": ["experiment.test.batch_size=8"], "sweeps": ["experiment.test.dtype=fp16,fp32"],
                   "num_samples": 500},
        "studies": {"main": [{"test": {"num_samples": 500}}, {"test": {"num_samples": 500}}]}})
    results.write_json_atomic(outputs / name / "estimate.json", {"runs": 3840})
    results.write_json_atomic(outputs / name / "refused.json", {
        "sentence": "plan refused: phase1_framework_validation is estimated at 9.00 GPU-hours, over its max_gpu_hours "
                    "of 2 in phases.yaml; nothing was started", "dag_run": run_id})
    return name


def test_a_refused_run_shows_its_sentence_on_its_tab_and_the_nav_page(auth_client, tokens, outputs):
    name = _refused_folder(outputs)
    tab = auth_client.get(f"/numa-lab/runs/{DAG_ID}/manual__refused", headers=bearer(tokens["viewer"]))
    assert tab.status_code == 200 and "refused" in tab.text and "over its max_gpu_hours of 2" in tab.text
    assert "no report yet" not in tab.text
    nav = auth_client.get("/numa-lab/", headers=bearer(tokens["viewer"])).text
    row = nav.split(f"<td>{name}</td>", 1)[1].split("</tr>", 1)[0]
    assert "refused" in row and "over its max_gpu_hours of 2" in row
    assert "experiment_summary.json" not in row and f"{name}/estimate.json" in row  # only links that lead somewhere


def test_each_run_folder_shows_its_dag_run_overrides_and_samples(auth_client, tokens, outputs):
    name = _refused_folder(outputs)
    nav = auth_client.get("/numa-lab/", headers=bearer(tokens["viewer"])).text
    row = nav.split(f"<td>{name}</td>", 1)[1].split("</tr>", 1)[0]
    for shown in (DAG_ID, "manual__refused", "experiment.test.batch_size=8", "experiment.test.dtype=fp16,fp32", "500"):
        assert shown in row
    tab = auth_client.get(f"/numa-lab/runs/{DAG_ID}/manual__refused", headers=bearer(tokens["viewer"])).text
    assert "DAG run manual__refused" in tab and "num_samples 500" in tab and "experiment.test.batch_size=8" in tab
