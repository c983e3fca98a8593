"""Airflow operators over :mod:`numa_ops.supervise`: one task instance per placement lane."""

from __future__ import annotations

import socket
from typing import Any

from airflow.sdk import BaseOperator

from numa_ops import results
from numa_ops.supervise import LaneSupervisor


class NumaLaneOperator(BaseOperator):
    """Run one lane's bound worker (a GPU, a CPU node, a memory node) over the lane's runs.

    Each run's progress streams into the task log. A run that crashes or passes its
    ``timeout_s`` is recorded as failed and the lane goes on; the task fails at the end if any
    run failed, after every run has been tried. A retry measures only runs without a
    successful record. Killing the task ends the worker's whole process group. A lane planned on
    one host's topology (``lane["host"]``) refuses to measure on another.
    """

    template_fields = ("lane",)
    ui_color = "#c9e4ff"

    def __init__(self, *, lane: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lane = lane
        self._supervisor: LaneSupervisor | None = None

    def execute(self, context: Any) -> dict[str, Any]:
        lane = self.lane
        context["lane_name"] = lane["name"]  # names the mapped instance in the UI
        folder_path = results.run_folder(lane["folder"])
        here = socket.gethostname()
        if lane.get("host") and lane["host"] != here:
            raise RuntimeError(
                f"lane {lane['name']} was planned on the topology of {lane['host']} but runs on {here}: "
                f"queue {lane.get('queue') or 'default'} must be served by {lane['host']}'s worker alone"
            )
        self._supervisor = LaneSupervisor(lane, folder_path, log=self.log.info)
        self.log.info("lane %s: %d runs into %s", lane["name"], len(lane["runs"]), folder_path)
        outcome = self._supervisor.run()
        self.log.info(
            "lane %s: %d succeeded, %d failed, %d skipped (already measured), %d taken by other lanes (spread); "
            "%d worker(s), start-up %s s, %.1f s in all",
            lane["name"], len(outcome.succeeded), len(outcome.failed), outcome.skipped, len(outcome.elsewhere),
            outcome.workers_started, [round(s, 1) for s in outcome.startup_s], outcome.wall_s,
        )
        if outcome.failed:
            raise RuntimeError(
                f"lane {lane['name']}: {len(outcome.failed)} of {outcome.planned} runs failed "
                f"(recorded with their reasons in {folder_path / 'runs'}): {', '.join(outcome.failed[:5])}"
            )
        return outcome.to_dict()

    def on_kill(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop("killed: the Airflow task was stopped")
