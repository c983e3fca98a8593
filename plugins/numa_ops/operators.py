"""Airflow operators over :mod:`numa_ops.supervise`: one task instance per placement lane."""

from __future__ import annotations

import socket
from typing import Any, TypedDict

from airflow.sdk import BaseOperator

from numa_ops import results
from numa_ops.specs import DeviceTurn, DeviceTurnJson, Lane
from numa_ops.supervise import LaneOutcome, LaneOutcomeJson, LaneSupervisor


class TurnOutcomeJson(TypedDict):
    """A turn of several lanes' outcomes, as the lane task's XCom holds it."""

    lanes: list[LaneOutcomeJson]


class NumaLaneOperator(BaseOperator):
    """Run one device's turn: its lanes' bound workers (a GPU, a CPU node, a memory node), one after another.

    ``lane`` is a :class:`numa_ops.specs.DeviceTurn` as JSON (the XCom of ``plan_runs``), parsed once here:
    a single lane is a turn of one; where a device has several lanes (``test.repeats``, several placements,
    multi-GPU patterns) they are measured in turn in the plan's order: repeats ABBA, and the order that lets
    every GPU meet its patterns (:func:`numa_ops.plan.device_turns`).

    Each run's progress streams into the task log. A run that crashes or passes its
    ``timeout_s`` is recorded as failed and the lane goes on; the task fails at the end if any
    run failed, after every run has been tried. A retry measures only runs without a
    successful record. Killing the task ends the worker's whole process group. A turn planned on
    one host's topology (``host``) refuses to measure on another.
    """

    template_fields = ("lane",)
    ui_color = "#c9e4ff"

    def __init__(self, *, lane: DeviceTurnJson, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lane = lane
        self._supervisor: LaneSupervisor | None = None
        self._killed: str | None = None

    def execute(self, context: Any) -> LaneOutcomeJson | TurnOutcomeJson:
        turn = DeviceTurn.from_json(self.lane)
        context["lane_name"] = turn.name  # names the mapped instance in the UI
        _refuse_another_host(turn)
        outcomes = [self._measure(lane) for lane in turn.lanes]
        failed = [run_id for outcome in outcomes for run_id in outcome.failed]
        if failed:
            planned = sum(outcome.planned for outcome in outcomes)
            raise RuntimeError(
                f"lane {turn.name}: {len(failed)} of {planned} runs failed (recorded with their reasons in "
                f"{results.run_folder(turn.folder) / 'runs'}): {', '.join(failed[:5])}"
            )
        return outcomes[0].to_dict() if len(outcomes) == 1 else {"lanes": [o.to_dict() for o in outcomes]}

    def _measure(self, lane: Lane) -> LaneOutcome:
        folder_path = results.run_folder(lane.folder)
        self._supervisor = LaneSupervisor(lane, folder_path, log=self.log.info)
        if self._killed:  # stopped before this lane's turn: its runs are recorded as killed, none measured
            self._supervisor.stop(self._killed)
        self.log.info("lane %s: %d runs into %s", lane.name, len(lane.runs), folder_path)
        outcome = self._supervisor.run()
        self.log.info(
            "lane %s: %d succeeded, %d failed, %d skipped (already measured), %d taken by other lanes (spread); "
            "%d worker(s), start-up %s s, %.1f s in all",
            lane.name, len(outcome.succeeded), len(outcome.failed), outcome.skipped, len(outcome.elsewhere),
            outcome.workers_started, [round(s, 1) for s in outcome.startup_s], outcome.wall_s,
        )
        return outcome

    def on_kill(self) -> None:
        self._killed = "killed: the Airflow task was stopped"
        if self._supervisor is not None:
            self._supervisor.stop(self._killed)


def _refuse_another_host(turn: DeviceTurn) -> None:
    """A turn planned on one host's topology must not measure on another (its queue is served elsewhere)."""
    here = socket.gethostname()
    if turn.host and turn.host != here:
        raise RuntimeError(
            f"lane {turn.name} was planned on the topology of {turn.host} but runs on {here}: "
            f"queue {turn.queue or 'default'} must be served by {turn.host}'s worker alone"
        )
