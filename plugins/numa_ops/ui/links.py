"""The "NUMA report" extra link on the lane (``measure``) and ``report`` tasks: the DAG run's report."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlparse

from airflow.sdk import BaseOperatorLink

APP_PREFIX = "/numa-lab"
TASKS = ("measure", "report")


def app_href(path: str = "") -> str:
    """An absolute URL path into the app, under the path Airflow's UI is served at (``[api] base_url``)."""
    from airflow.configuration import conf

    base = urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"{base}{APP_PREFIX}/{path}"


def run_report_url(dag_id: str, run_id: str) -> str:
    """The app's page for a DAG run's report (``/numa-lab/runs/<dag_id>/<run_id>``)."""
    return app_href(f"runs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}")


class NumaReportLink(BaseOperatorLink):
    """Links the ``measure`` (also ``<host>.measure``) and ``report`` tasks to their DAG run's report."""

    name = "NUMA report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if ti_key.task_id.rsplit(".", 1)[-1] not in TASKS:
            return ""
        return run_report_url(ti_key.dag_id, ti_key.run_id)
