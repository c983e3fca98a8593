"""Airflow plugin: the trigger form's check of overrides and sweeps (``numa_ops.trigger_form``) in the API
server, so that the form and the REST API refuse, with the planner's own message, what the planner would
refuse without the host, before a DAG run exists.

Only there: other Airflow commands load plugins too, and ``airflow dags test`` (the quick start) should
still create its run and let ``plan_runs`` refuse it, with the same message, as a failed DAG run."""

from __future__ import annotations

import sys

from airflow.plugins_manager import AirflowPlugin
from numa_ops import trigger_form


def in_api_server(argv: list[str] | None = None) -> bool:
    """True in ``airflow api-server`` (and its workers, which keep its argv)."""
    argv = sys.argv if argv is None else argv
    return "api-server" in argv[1:2]


class NumaLabTriggerForm(AirflowPlugin):
    """Registers jsonschema's ``numa-lab-override`` format when loaded by the API server."""

    name = "numa_lab_trigger_form"

    def on_load(self, *args, **kwargs) -> None:
        if in_api_server():
            trigger_form.register()


if in_api_server():
    trigger_form.register()
