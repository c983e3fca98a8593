"""The report as a browser shows it: headless Chromium, no network, every chart drawn; the PNGs are pictures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from numa_ops import db as numa_db
from numa_ops import regressions, report
from PIL import Image

from tests.numa_ops import planted
from tests.numa_ops.records import record

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="needs chromium (./numa-lab test installs it when run as root)")
ALL_CHARTS = {"throughput", "stages", "regimes", "h2d_vs_image", "bytes_vs_image", "sensitivity", "scaling",
              "crossover", "compile", "nightly"}


def _every_kind_of_run(folder: Path, db: Path) -> None:
    """Runs that give every chart something to draw."""
    planted.write_crossover_runs(folder)  # stages, regimes, scaling, crossover
    planted.write_crossover_runs(folder, height=384)  # a second image size: the transfer charts
    planted.write_penalty_runs(folder, 0.2, 0)  # local and remote: the sensitivity heatmap
    rec = planted.sized_run("f1.compiled", 8)
    rec["metrics"].update(execution="compile", compile_speedup=1.4, compile_break_even_samples=5000, compile_s=20.0)
    planted.write(folder, rec)
    planted.write(folder, record("f1.failed", success=False, device="cuda", placement="local"))
    numa_db.load_runs([folder], db)
    verdict = {"night": "n1", "baseline": "n0", "config_key": "k", "config": "d8 eager", "tonight_mean": 95.0,
               "tonight_low": 94.0, "tonight_high": 96.0, "baseline_mean": 100.0, "baseline_low": 99.0,
               "baseline_high": 101.0, "change": -0.05, "verdict": "regression", "error": None}
    regressions.save_verdicts("nightly_sweep", [verdict], accepted=False, database=db)


def _chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    """Chromium with no network: its own empty network namespace where the host allows one, and in any case
    a dead proxy and a resolver that finds nothing."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--proxy-server=127.0.0.1:9",
           '--host-resolver-rules=MAP * ~NOTFOUND', f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=20000", *args, url]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        cmd = ["unshare", "-n", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    base = tmp_path_factory.mktemp("render")
    db = base / "db.duckdb"
    _every_kind_of_run(base / "f1", db)
    index = report.write_report(base / "rep", "render check", database=db, folder="f1")
    url = index.resolve().as_uri()
    dom = _chromium(base, url, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = base / "screenshot.png"
    taken = _chromium(base, url, f"--screenshot={shot}", "--window-size=1200,4000", "--hide-scrollbars")
    assert taken.returncode == 0, taken.stderr[-2000:]
    return {"dir": base / "rep", "dom": dom.stdout, "screenshot": shot,
            "charts": json.loads((base / "rep" / "report.json").read_text())["charts"]}


def _chart_divs(dom: str) -> dict[str, str]:
    """The markup of each chart's embed, by chart name."""
    starts = [(m.group(1), m.start()) for m in re.finditer(r'<div[^>]*\bid="chart-([\w-]+)"', dom)]
    ends = [s for _, s in starts[1:]] + [dom.rindex("</body>")]
    return {name: dom[start:end] for (name, start), end in zip(starts, ends, strict=True)}


def test_every_chart_is_drawn_offline(rendered):
    assert set(rendered["charts"]) == ALL_CHARTS
    divs = _chart_divs(rendered["dom"])
    assert list(divs) == rendered["charts"]
    assert f'data-charts-rendered="{len(ALL_CHARTS)}"' in rendered["dom"], "some vegaEmbed call did not finish"
    assert 'class="chart-error"' not in rendered["dom"]
    for name, markup in divs.items():
        assert len(re.findall(r'<svg[^>]*class="marks"', markup)) == 1, f"{name}: no drawing"
        drawn = re.findall(r'<g class="mark-(?:rect|line|symbol|rule) role-mark[^"]*"[^>]*>(.*?)</g>', markup, re.S)
        assert any(re.search(r"<(path|line)\b", g) for g in drawn), f"{name}: a drawing without marks"


def test_pngs_exist_and_are_not_blank(rendered):
    for name in rendered["charts"]:
        with Image.open(rendered["dir"] / f"{name}.png") as img:
            rgb = img.convert("RGB")
            colors = rgb.getcolors(maxcolors=1 << 20)
            assert colors is not None and len(colors) > 10, f"{name}.png is blank"
            background = max(colors)[1]
            inked = sum(n for n, c in colors if c != background)
            assert inked > 0.01 * rgb.width * rgb.height, f"{name}.png is nearly empty"


def test_screenshot_is_not_blank(rendered):
    with Image.open(rendered["screenshot"]) as img:
        colors = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50
