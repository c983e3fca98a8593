"""Airflow plugin: numa-lab inside the Airflow UI, behind Airflow's login (``numa_ops.ui``).

A "NUMA report" tab on every DAG run, a "numa-lab" nav entry (run folders, all-runs report, SQL), a
"NUMA report" extra link on the lane and report tasks, and the FastAPI app that serves them at ``/numa-lab``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from numa_ops.ui.app import app
from numa_ops.ui.links import APP_PREFIX, NumaReportLink, app_href


class NumaLabUI(AirflowPlugin):
    """The numa-lab pages, tab, nav entry and extra link."""

    name = "numa_lab_ui"
    fastapi_apps = [{"app": app, "url_prefix": APP_PREFIX, "name": "numa-lab"}]
    external_views = [
        {"name": "NUMA report", "href": app_href("runs/{DAG_ID}/{RUN_ID}"), "destination": "dag_run",
         "url_route": "numa-report"},
        {"name": "numa-lab", "href": app_href(), "destination": "nav", "url_route": "numa-lab"},
    ]
    global_operator_extra_links = [NumaReportLink()]
