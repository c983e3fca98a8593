"""Which paths the app serves: only plain paths to report-like files inside the outputs folder."""

from __future__ import annotations

import pytest
from numa_ops.ui import files


@pytest.fixture
def outputs(tmp_path, outputs_dir):
    (tmp_path / "airflow.cfg").write_text("secret")
    (outputs_dir / "f1" / "report").mkdir(parents=True)
    (outputs_dir / "f1" / "report" / "index.html").write_text("report")
    (outputs_dir / "out.html").symlink_to(tmp_path / "airflow.cfg")
    (outputs_dir / "inside.html").symlink_to(outputs_dir / "f1" / "report" / "index.html")
    return outputs_dir


def test_a_report_inside_is_served(outputs):
    assert files.resolve("f1/report/index.html") == outputs / "f1" / "report" / "index.html"


def test_a_symlink_that_stays_inside_is_served(outputs):
    assert files.resolve("inside.html").read_text() == "report"


@pytest.mark.parametrize(("path", "status"), [
    ("../airflow.cfg", 400), ("../../airflow.cfg", 400), ("f1/../../airflow.cfg", 400), ("./f1/report/index.html", 400),
    ("/etc/passwd", 400), ("f1//report/index.html", 400), ("%2e%2e/airflow.cfg", 400),
    ("%252e%252e%252fairflow.cfg", 400),
    ("..\\airflow.cfg", 400), ("f1/report/index.html\x00.png", 400), (".lock.json", 400),
    ("out.html", 403), ("f1/report", 403), ("numa_lab.duckdb", 403), ("f1/report/none.html", 404),
], ids=["up", "up-twice", "down-then-up", "dot", "absolute", "empty-part", "encoded", "double-encoded", "backslash",
        "nul", "hidden", "symlink-out", "folder", "database", "missing"])
def test_paths_out_or_not_served_are_refused(outputs, path, status):
    with pytest.raises(files.RefusedPath) as refused:
        files.resolve(path)
    assert refused.value.status == status and repr(path) in str(refused.value)
