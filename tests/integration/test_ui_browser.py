"""The numa-lab pages in a real browser (Playwright, the system's headless Chromium, no network) against one
real ``airflow standalone``: a Phase 1 run's "NUMA report" tab draws its charts, the nav page lists the run
folder, the SQL page runs a preset; without a login, and on a path out of ``outputs/``, the app refuses; the
trigger form refuses (never clamps) an out-of-range num_samples and a reserved folder, creating no DAG run;
a run refused at planning shows the refusal on its tab.

``NUMA_LAB_UI_SCREENSHOTS=<folder>`` saves the tab, the nav page and the SQL page there as PNGs.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

from tests.conftest import TINY
from tests.integration.conftest import (
    AIRFLOW,
    PHASES,
    REPO,
    airflow_env,
    call,
    dag_runs,
    free_port,
    standalone,
    wait_for_dags,
)
from tests.integration.test_airflow_route import trigger, wait_done

pytestmark = pytest.mark.integration
playwright = pytest.importorskip("playwright.sync_api")

P1 = "phase1_framework_validation"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = os.environ.get("NUMA_LAB_UI_SCREENSHOTS")
CHARTS_DRAWN = """() => {
  const embeds = [...document.querySelectorAll('.vega-embed')];
  return embeds.length > 0 && embeds.every(e => e.querySelector('canvas') ||
         e.querySelector('svg g[class^="mark-"] path, svg g[class^="mark-"] rect, svg g[class^="mark-"] line'));
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One Airflow (Phase 1 only, on the tiny experiment) with one finished Phase 1 run, triggered from its form
    after logging in through the login form: (base, token, run_id, outputs, the saved login session)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs chromium (./numa-lab test installs it when run as root)")
    root = tmp_path_factory.mktemp("ui")
    configs, outputs = root / "configs", root / "outputs"
    shutil.copytree(REPO / "include" / "configs", configs)
    (configs / "tiny.yaml").write_text(TINY)
    (configs / "phases.yaml").write_text(PHASES.format(name=P1, after="[]"))
    outputs.mkdir()
    (root / "airflow.cfg").write_text("SECRET")
    (root / "secret").mkdir()
    (root / "secret" / "page.html").write_text("SECRET")
    (outputs / "escape").symlink_to(root / "secret", target_is_directory=True)
    port = free_port()
    base = f"http://localhost:{port}"
    home = root / "airflow"
    env = {**airflow_env(home, port), "NUMA_LAB_OUTPUTS": str(outputs), "NUMA_LAB_CONFIGS": str(configs),
           "PYTHONWARNINGS": "ignore", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = root / "standalone.log"
    with standalone([AIRFLOW, "standalone"], env, home, log, base=base) as token:
        wait_for_dags(token, [P1], base=base)
        user, password = next(iter(json.loads(
            (home / "simple_auth_manager_passwords.json.generated").read_text()).items()))
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            run_id = login_and_trigger(browser.new_page(viewport={"width": 1400, "height": 1000}), base, user, password,
                                       token, root / "login.json")
            browser.close()
        assert wait_done(token, P1, run_id, base) == "success", log.read_text()[-3000:]
        yield base, token, run_id, outputs, root / "login.json"


def login_and_trigger(page, base: str, user: str, password: str, token: str, session: Path) -> str:
    """Log in through Airflow's login form, trigger Phase 1 from its trigger form (its defaults: the phase's
    studies), keep the session in ``session``; returns the new DAG run's id."""
    page.goto(f"{base}/dags/{P1}")
    page.wait_for_url("**/auth/login**", timeout=60_000)
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/dags/{P1}", timeout=60_000)
    assert any(c["name"] == "_token" for c in page.context.cookies())
    page.get_by_role("button", name="Trigger").first.click()
    page.get_by_role("dialog").get_by_role("button", name="Trigger").click()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not dag_runs(token, P1, base=base):
        time.sleep(1)
    (run,) = dag_runs(token, P1, base=base)
    page.context.storage_state(path=str(session))
    return run["dag_run_id"]


@pytest.fixture(scope="module")
def browser(site):
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(site, browser):
    """A page with the session the login form gave (its ``_token`` cookie)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, storage_state=str(site[4]))
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def anonymous(browser):
    context = browser.new_context()
    yield context.new_page()
    context.close()


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=False)


def numa_lab_frame(page):
    """The frame in which the Airflow UI shows the plugin's page."""
    page.wait_for_selector("iframe", timeout=60_000)
    page.wait_for_function("() => [...document.querySelectorAll('iframe')].some(f => f.src.includes('numa-lab/'))",
                           timeout=30_000)
    page.wait_for_load_state("networkidle")
    return next(f for f in page.frames if urlparse(f.url).path.startswith("/numa-lab/"))


def test_the_runs_tab_shows_its_report_with_charts(site, page):
    base, _, run_id, _, _ = site
    page.goto(f"{base}/dags/{P1}/runs/{run_id}/plugin/numa-report")
    frame = numa_lab_frame(page)
    frame.wait_for_function(CHARTS_DRAWN, timeout=60_000)
    assert f"/{P1}/" in frame.url or "/report/index.html" in frame.url
    page.get_by_text("NUMA report").first.wait_for(timeout=10_000)
    shot(page, "numa_report_tab.png")
    # the same report directly (the extra link's URL)
    page.goto(f"{base}/numa-lab/runs/{P1}/{run_id}")
    page.wait_for_function(CHARTS_DRAWN, timeout=60_000)
    assert page.url.endswith("/report/index.html")


def test_the_nav_page_lists_the_run_folder(site, page):
    base, _, _, outputs, _ = site
    (folder,) = [p.parent.name for p in outputs.glob("*/plan.json")]
    page.goto(f"{base}/numa-lab/")
    assert page.get_by_text(folder).count() >= 1
    page.goto(f"{base}/plugin/numa-lab")  # the nav entry: the same page inside the Airflow UI
    numa_lab_frame(page).get_by_text(folder).first.wait_for(timeout=30_000)
    shot(page, "numa_lab_nav.png")


def test_the_sql_page_runs_a_preset(site, page):
    base = site[0]
    page.goto(f"{base}/numa-lab/sql")
    page.locator(".presets button").first.click()  # a preset submits its query
    page.wait_for_selector("table#result", timeout=30_000)
    assert page.locator(".error").count() == 0
    assert page.locator("table#result thead th").count() >= 1
    shot(page, "numa_lab_sql.png")


REFUSED = ["/numa-lab/", "/numa-lab/sql?q=SELECT+1", "/numa-lab/runs/" + P1 + "/x"]


@pytest.mark.parametrize("path", REFUSED, ids=REFUSED)
def test_without_login_the_pages_are_refused(site, anonymous, path):
    response = anonymous.goto(site[0] + path)
    assert response.status == 401
    assert "log in to the Airflow UI" in anonymous.content()


TRAVERSALS = {"dotdot": "..%2F..%2Fairflow.cfg", "encoded": "%2e%2e%2f%2e%2e%2fairflow.cfg",
              "double-encoded": "%252e%252e%252fairflow.cfg", "symlink-out": "escape/page.html"}


@pytest.mark.parametrize("path", TRAVERSALS.values(), ids=TRAVERSALS.keys())
def test_a_path_out_of_outputs_is_refused(site, page, path):
    response = page.goto(f"{site[0]}/numa-lab/files/{path}")
    assert response.status in (400, 403, 404)
    assert "SECRET" not in page.content()
    assert json.loads(page.inner_text("body"))["detail"].startswith(("refused", "not found"))


def test_a_raw_dotdot_path_is_refused(site):
    """``../../airflow.cfg`` as sent by a client that does not normalize it (a browser would)."""
    host, port = urlparse(site[0]).hostname, urlparse(site[0]).port
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/numa-lab/files/../../airflow.cfg", headers={"Authorization": f"Bearer {site[1]}"})
    response = conn.getresponse()
    body = response.read().decode()
    assert response.status == 400 and "not a plain path inside the outputs folder" in body and "SECRET" not in body


@pytest.mark.parametrize("task_id", ["measure", "report"])
def test_the_lane_and_report_tasks_link_to_the_report(site, task_id):
    base, token, run_id, _, _ = site
    path = f"/api/v2/dags/{P1}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/links"
    links = call("GET", path + ("?map_index=0" if task_id == "measure" else ""), token, base=base)["extra_links"]
    assert links["NUMA report"] == f"/numa-lab/runs/{P1}/{quote(run_id, safe='')}"


def open_trigger_form(page, base: str):
    """Phase 1's trigger dialog, its fields drawn."""
    page.set_default_timeout(120_000)
    page.goto(f"{base}/dags/{P1}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=element_num_samples]").wait_for()
    return dialog


@pytest.mark.parametrize(("field", "value", "said"), [
    ("num_samples", "-5", "num_samples must be a whole number from 1 to 10,000,000 (got -5)"),
    ("num_samples", "100000000000", "num_samples must be a whole number from 1 to 10,000,000 (got 100000000000)"),
    ("folder", "report", "outputs/report is numa-lab's own (the all-runs report)"),
    ("folder", "numa_lab.duckdb", "outputs/numa_lab.duckdb is numa-lab's own"),
], ids=["negative-samples", "too-many-samples", "all-runs-report-folder", "database-folder"])
def test_the_form_refuses_and_makes_no_run(site, page, field, value, said):
    base, token = site[0], site[1]
    before = len(dag_runs(token, P1, base=base))
    dialog = open_trigger_form(page, base)
    box = dialog.locator(f"input[name=element_{field}]")
    box.fill(value)
    dialog.get_by_text("Resume folder").click()  # leave the field, as a person does
    assert box.input_value() == value  # kept as typed: not clamped into the range
    dialog.get_by_role("button", name="Trigger").click()
    page.get_by_text(said).first.wait_for(timeout=60_000)
    shot(page, f"form_refuses_{field}.png")
    assert len(dag_runs(token, P1, base=base)) == before


def test_the_number_field_takes_no_letters(site, page):
    box = open_trigger_form(page, site[0]).locator("input[name=element_num_samples]")
    box.fill("12")
    box.press_sequentially("abc")
    assert box.input_value() == "12"


def test_a_run_refused_at_planning_shows_the_refusal_on_its_tab(site, page):
    base, token = site[0], site[1]
    run_id = trigger(token, P1, {"overrides": ["experiment.hardware.numa_nodes=[5]"]}, base)  # the host decides
    assert wait_done(token, P1, run_id, base) == "failed"
    page.goto(f"{base}/dags/{P1}/runs/{quote(run_id, safe='')}/plugin/numa-report")
    frame = numa_lab_frame(page)
    frame.locator("#refused").wait_for(timeout=30_000)
    text = frame.locator("#refused").inner_text()
    assert text.startswith("plan refused: ") and "NUMA node [5] not found" in text
    shot(page, "refused_run_tab.png")
