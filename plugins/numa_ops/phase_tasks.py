"""What each task of a phase DAG does, as plain functions; :mod:`numa_ops.dag_factory` declares the tasks.

discover_topology -> plan_runs -> measure (:class:`numa_ops.operators.NumaLaneOperator`) -> load_duckdb ->
report -> gate [-> compare_baseline]

The tasks after planning receive ``plans``: what ``plan_runs`` returned (a list of device turns as JSON,
one per measure task: a lane, or one device's lanes), or, with GPU hosts configured, a list of each host's
(None for a host that skipped or failed); None when planning failed. A task with nothing planned to work
on skips, saying why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from numa_ops.phases import Phase
from numa_ops.run_folder import REFUSED
from numa_ops.specs import DeviceTurn, DeviceTurnJson, Lane
from numa_ops.trigger_request import TriggerRequest

if TYPE_CHECKING:
    from numa_ops.gate import GateResultJson
    from numa_ops.nightly import NightOfFolderJson, NightsJson
    from numa_ops.pipeline import LoadedJson, LocationsJson
    from numa_ops.roles import SkippedStudy
    from numa_ops.topology import TopologyJson
    from numa_ops.trigger_params import TriggerParams

# The engine's modules are imported inside the task bodies: a DAG file parses without them.


def planned_turns(plans: Any) -> list[DeviceTurn]:
    """Every measure task's turn in ``plans`` (``plan_runs``'s XCom), whether of one host or a list of each host's."""
    per_host = [plan for plan in plans or [] if plan]
    return [DeviceTurn.from_json(turn) for plan in per_host for turn in (plan if isinstance(plan, list) else [plan])]


def planned_folders(plans: Any) -> list[str]:
    """The run folders of ``plans``, one per host, in order; skips the task when nothing was planned."""
    folders = list(dict.fromkeys(turn.folder for turn in planned_turns(plans)))
    if not folders:
        raise AirflowSkipException("nothing was planned (plan_runs failed, or no host had a study to run): "
                                   "see plan_runs's log for the reason")
    return folders


def studies_on_host(phase: Phase, host: str | None, request: TriggerRequest) -> list[str]:
    """The chosen studies that run on ``host``; skips the host's tasks when it has none (or was not chosen).

    ``host`` is None without GPU hosts configured: the one host runs every chosen study.
    """
    chosen = request.chosen_studies(phase)
    if host is None:
        return chosen
    if host not in (request.hosts or ()):
        raise AirflowSkipException(f"host {host} was not chosen in the trigger form")
    if request.experiment:
        return chosen
    wanted = chosen or list(phase.studies)
    pinned = {name: study.hosts for name, study in phase.studies.items() if study.hosts}
    on_host = [s for s in wanted if host in pinned.get(s, [host])]
    if not on_host:
        raise AirflowSkipException(f"none of the chosen studies ({', '.join(wanted)}) runs on host {host}")
    return on_host


def discover_topology() -> TopologyJson:
    """Read the host's NUMA nodes and GPUs."""
    from numa_ops.topology import discover

    topology = discover()
    for note in topology.notes:
        print(f"topology: {note}")
    return topology.to_dict()


def run_folder_name(dag_id: str, request: TriggerRequest, dag_run: Any, host: str | None) -> str:
    """The form's resume folder, or a new one named for the experiment (or phase) and the DAG run;
    ``<folder>_<host>`` on a GPU host."""
    from numa_ops import run_folder
    from numa_ops.paths import safe_name

    if request.folder:
        folder = safe_name(request.folder, "folder")
    else:
        name = request.experiment or dag_id.split("_")[0]
        folder = run_folder.make(name, dag_run.run_after, run_folder.dag_run_token(dag_run.dag_id, dag_run.run_id))
    return run_folder.on_host(folder, host)


def check_form(dag_id: str, params: TriggerParams | None, host: str | None) -> TriggerRequest:
    """Parse the DAG run's params, refusing what the form's own schema cannot: keys it does not have, no study
    (and no experiment) chosen, a resume folder that is not this phase's nor a free name (raises ValueError
    with the sentence)."""
    from numa_ops.resume_folder import check

    request = TriggerRequest.from_params(params, [host] if host else None)
    request.check_chosen()
    if request.folder:
        check(request.folder, dag_id, [host] if host else None)
    return request


def refuse_plan(exc: Exception, ti: Any, folder_path: Path | None = None, run_id: str | None = None) -> NoReturn:
    """Fail planning with the planner's message as the task log's last line (no retry would change it),
    leaving the message in XCom (``refused``) for the gate's own last line; a run folder already written
    is marked refused (``refused.json``) with the same sentence, for the UI."""
    from numa_ops import results

    sentence = f"plan refused: {exc}"
    if folder_path is not None and (folder_path / "plan.json").is_file():
        results.write_json_atomic(folder_path / REFUSED, {"sentence": sentence, "dag_run": run_id,
                                                          "refused_at": results.now()})
    ti.xcom_push(key="refused", value=str(exc))
    print(sentence)
    raise AirflowFailException(sentence) from None


def plan_runs(
    dag_id: str, phase: Phase, topology: TopologyJson, params: TriggerParams | None, dag_run: Any, ti: Any,
    host: str | None = None,
) -> list[DeviceTurnJson]:
    """Validate the request against the phase's studies and the host; write the plan.

    Returns one device turn (as JSON) per measure task, each naming the host whose topology it was planned
    on and the queue (``host``) serving it. A refusal (form, config, override, path; an absent GPU or node;
    the cost over ``max_gpu_hours``) fails the task through :func:`refuse_plan`, its sentence first in the log.
    """
    from numa_ops import paths
    from numa_ops.pipeline import OutputsError, write_plan
    from numa_ops.plan import device_turns
    from numa_ops.roles import resolve_studies
    from numa_ops.topology import Topology

    topo = Topology.from_dict(topology)
    try:
        request = check_form(dag_id, params, host)
        resolved = resolve_studies(phase, topo, studies_on_host(phase, host, request), request.all_overrides(),
                                   request.experiment)
        studies = resolved.runnable(topo.host)
    except ValueError as exc:
        refuse_plan(exc, ti)
    folder = run_folder_name(dag_id, request, dag_run, host)
    try:
        folder_path, lanes = write_plan(folder, studies, topo, {"phase": dag_id, "dag_run": dag_run.run_id,
                                                                "params": request.to_json(), **resolved.plan_fields()})
        turns = device_turns(lanes, phase.max_lanes)
    except (ValueError, OutputsError) as exc:
        refuse_plan(exc, ti, paths.outputs_dir() / folder, dag_run.run_id)
    skipped = resolved.skipped
    cost = estimate_cost(phase, lanes, topology, folder_path, skipped)
    cost_lines = [*cost.lines("GPU" if topology.get("gpus") else "CPU"), *skipped_lines(skipped)]
    try:
        check_cost(dag_id, phase, cost)
    except ValueError as exc:
        print(f"plan refused: {exc}")  # first, before the plan and the estimate it was refused on
        _print_plan(folder_path, studies, lanes, turns, cost_lines)
        refuse_plan(exc, ti, folder_path, dag_run.run_id)
    (folder_path / REFUSED).unlink(missing_ok=True)  # a folder refused before, resumed within budget now
    _print_plan(folder_path, studies, lanes, turns, cost_lines)
    return [replace(turn, host=topology["host"], queue=host).to_json() for turn in turns]


def estimate_cost(phase: Phase, lanes: list[Lane], topology: TopologyJson, folder_path: Path,
                  skipped_studies: list[SkippedStudy] | None = None) -> Any:
    """What the plan will cost (and which studies this host skips, and why), kept as ``estimate.json`` in the
    plan folder."""
    from numa_ops import estimate, results
    from numa_ops.topology import Topology

    cost = estimate.estimate_plan(lanes, phase.max_lanes, estimate.gpu_names_of(Topology.from_dict(topology)),
                                  estimate.read_past_records())
    results.write_json_atomic(
        folder_path / "estimate.json",
        {
            **cost.to_json(),
            "max_gpu_hours": phase.max_gpu_hours,
            "skipped_studies": [s.to_json() for s in skipped_studies or []],
        },
    )
    return cost


def check_cost(dag_id: str, phase: Phase, cost: Any) -> None:
    """Refuse (raise :class:`numa_ops.estimate.OverBudget`) a plan over the phase's ``max_gpu_hours``."""
    from numa_ops import estimate

    estimate.check_budget(cost, phase.max_gpu_hours, dag_id)


def skipped_lines(skipped_studies: list[SkippedStudy] | None) -> list[str]:
    """``plan.json``'s ``skipped_studies`` as log lines: not estimated, not run, and why."""
    return [f"  {s.line()}" for s in skipped_studies or []]


def _print_plan(folder_path: Path, studies: Mapping[str, list[Any]], lanes: list[Lane], turns: list[DeviceTurn],
                cost_lines: list[str]) -> None:
    """The plan in plan_runs's log: runs, studies, lanes, which lanes a device's task takes in turn, the estimate."""
    from numa_ops.plan import count_runs

    print(
        f"plan: {count_runs(lanes)} runs of {len(studies)} studies on {len(lanes)} lane(s) into "
        f"outputs/{folder_path.name}"
    )
    for study, configs in studies.items():
        print(f"  study {study}: {len(configs)} sweep point(s)")
    for lane in lanes:
        print(f"  lane {lane.name}: {len(lane.runs)} runs")
    for turn in turns:
        if turn.name != turn.lanes[0].name:  # a device's lanes, one task, in the plan's order (repeats ABBA, patterns)
            print(f"  task {turn.name}: lanes in turn: {', '.join(lane.name for lane in turn.lanes)}")
    for line in cost_lines:
        print(line)


def load_duckdb(plans: Any) -> LoadedJson:
    """Write each host's results.json and summary; load every run record into DuckDB, once."""
    from numa_ops import pipeline, results

    loaded = pipeline.summarize_and_load([results.run_folder(folder) for folder in planned_folders(plans)])
    for folder, summary in loaded["summaries"].items():
        print(f"{folder}: summary: {summary}")
    print(f"duckdb: {loaded['load']}")
    return loaded


def report(plans: Any) -> LocationsJson:
    """Write each host's report and the cumulative one; say where everything is."""
    from numa_ops import pipeline, results

    written = pipeline.write_reports([results.run_folder(folder) for folder in planned_folders(plans)])
    for name, folder in written["folders"].items():
        print(f"{name}: report: {folder['report']}")
    print(f"report_all_runs: {written['report_all_runs']}")
    print(f"duckdb: {written['duckdb']}")
    return written


def failed_steps(ti: Any, task_ids: list[str]) -> list[str]:
    """Which of ``task_ids`` failed (or never ran because one before them failed) in this DAG run."""
    if ti is None:
        return []
    states = ["failed", "upstream_failed"]
    return [t for t in task_ids if ti.get_ti_count(dag_id=ti.dag_id, task_ids=[t], run_ids=[ti.run_id], states=states)]


def gate(dag_id: str, phase: Phase, plans: Any, steps_failed: list[str] | None = None) -> GateResultJson:
    """Fail the phase (and hold back the next ones) on failed or missing runs, a failed step (``steps_failed``),
    or comparisons whose MDE exceeds the phase's ``max_mde``.

    Judges each host's run folder; returns ``{"passed": True, "folders": {folder: verdict}}`` (one host: one
    folder). Fails without retry: measuring the same runs again in place would not change it.
    """
    from numa_ops import results
    from numa_ops.gate import judge_run_folder

    folders = planned_folders(plans)
    verdicts = [judge_run_folder(results.run_folder(folder), phase.gate, steps_failed or []) for folder in folders]
    for folder, verdict in zip(folders, verdicts, strict=True):
        print(verdict.summary)
        for line in verdict.problems:
            print(f"  {line}")
        for comp in verdict.comparisons:
            mde = "no MDE" if comp.mde is None else f"MDE {comp.mde:.1%}"
            print(f"  comparison {comp.configuration}: {mde} ({comp.basis})")
        for line in verdict.intervals:
            print(f"  run {line}")
        for line in skipped_lines(results.skipped_studies(results.run_folder(folder))):
            print(line)
    for verdict in verdicts:  # last in the log: what failed and what to do, in one sentence each
        print(verdict.sentence)
    failed = [v.sentence for v in verdicts if not v.passed]
    if failed:
        raise AirflowFailException(f"{dag_id} did not pass its gate: {' '.join(failed)}")
    each = {folder: verdict.to_json() for folder, verdict in zip(folders, verdicts, strict=True)}
    passed: GateResultJson = {"passed": True, "folders": each}
    return passed


def fail_if_nothing_was_planned(ti: Any, upstream_task_ids: Iterable[str]) -> None:
    """The gate's pre-execute hook: planning failed (on any host), so nothing it asked for was measured.

    The gate runs whatever its upstream did (ALL_DONE); without this it would skip, and a DAG run whose
    leaves skipped is green. It fails instead, its log ending with the planner's message.
    """
    plan_ids = sorted(t for t in upstream_task_ids if t.rsplit(".", 1)[-1] == "plan_runs")
    failed = ti.get_ti_count(
        dag_id=ti.dag_id, task_ids=plan_ids, run_ids=[ti.run_id], states=["failed", "upstream_failed"]
    )
    if not failed:
        return
    refused = ti.xcom_pull(task_ids=plan_ids, key="refused")
    refused = [r for r in (refused if isinstance(refused, list) else [refused]) if r]
    reason = " ".join(refused) or f"see the log of {' / '.join(plan_ids)}"
    message = f"nothing was planned (plan_runs failed: {reason}); nothing was measured, so the gate fails"
    print(message)
    raise AirflowFailException(message)


def compare_baseline(dag_id: str, phase: Phase, plans: Any) -> NightsJson:
    """Compare tonight with the baseline night (:mod:`numa_ops.nightly`); a regression fails the run.

    Each host's folder is compared with that host's own nights (the series ``<dag_id>@<host>``), every host
    before any failure. Returns ``{"folders": {folder: {"host", "baseline", "verdicts"}}}`` (one host: one folder,
    its host None); fails naming every regression.
    """
    from numa_ops import nightly, paths, results

    queues = {turn.folder: turn.queue for turn in planned_turns(plans)}
    compared: dict[str, NightOfFolderJson] = {}
    problems: list[str] = []
    for folder in planned_folders(plans):
        queue = queues[folder]
        series = f"{dag_id}@{queue}" if queue else dag_id
        checked = nightly.check_night(results.run_folder(folder), series, phase.baseline, queue)
        print(f"{folder}: baseline: {checked.baseline or 'none yet: this night becomes the baseline'}")
        for verdict in checked.verdicts:
            print(f"  {verdict.line()}")
        problems.extend(checked.problems)
        compared[folder] = nightly.NightOfFolderJson(host=queue, baseline=checked.baseline,
                                                     verdicts=len(checked.verdicts))
    if problems:
        raise RuntimeError(f"{'; '.join(problems)} (see {paths.outputs_dir()} and table regressions)")
    return nightly.NightsJson(folders=compared)
