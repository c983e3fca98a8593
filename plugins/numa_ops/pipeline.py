"""The steps of a phase, shared by the Airflow DAGs and the command line.

plan (config x topology -> lanes, written to ``plan.json``) -> lanes measured -> finish
(``results.json``, summary, DuckDB load, reports).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypedDict

from numa_ops import paths, results, run_folder, settings, stopping
from numa_ops.config import ExperimentConfig, load_experiment, split_experiment
from numa_ops.estimate import model_run_seconds
from numa_ops.plan import as_rerun, build_plan, count_runs, lanes_by_device, pattern_gpus
from numa_ops.specs import Lane, lanes_from_plan
from numa_ops.supervise import LaneOutcome, LaneSupervisor
from numa_ops.topology import Topology, TopologyJson

LATEST = "latest.json"


folder_name = run_folder.make  # the name of a new run folder (numa_ops.run_folder)


class OutputsError(RuntimeError):
    """The outputs folder cannot take a night's results: refused before any GPU work."""


def min_free_mb() -> int:
    """Free space the outputs folder needs before a plan starts (``NUMA_LAB_MIN_FREE_MB``, default 500)."""
    return settings.min_free_mb()


def check_outputs_writable() -> None:
    """Refuse to start unless the outputs folder exists (or can be made), takes a file, and has room."""
    out = paths.outputs_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise OutputsError(
            f"outputs folder {out} is not writable ({exc.strerror or exc}); nothing was started"
        ) from None
    free = shutil.disk_usage(out).free // 2**20
    if free < min_free_mb():
        raise OutputsError(
            f"outputs folder {out} has {free} MB free, below NUMA_LAB_MIN_FREE_MB={min_free_mb()}; nothing was started"
        )


def prepare(
    experiment: str,
    overrides: list[str],
    topo: Topology,
    folder: str | None = None,
    zip_keys: list[list[str]] | None = None,
) -> tuple[Path, list[Lane]]:
    """Validate one experiment (with overrides and sweeps) and write its run folder's plan."""
    experiment, overrides = split_experiment(list(overrides), experiment)
    configs = {"main": load_experiment(experiment, overrides, zip_keys)}
    return write_plan(
        folder or folder_name(experiment), configs, topo, {"experiment": experiment, "overrides": overrides}
    )


def write_plan(
    folder: str, studies: dict[str, list[ExperimentConfig]], topo: Topology, request: dict[str, Any],
    rerun_of: str | None = None,
) -> tuple[Path, list[Lane]]:
    """Place every study's runs on lanes and write ``plan.json``; raises before anything runs.

    An existing plan of the same folder is kept when it has the same runs (a retried or
    re-triggered request), so completed runs are found and skipped. ``rerun_of``: every run measures that run again.
    """
    lanes = build_plan(folder, studies, topo, run_seconds=model_run_seconds)
    if rerun_of is not None:
        lanes = as_rerun(lanes, rerun_of)
    check_outputs_writable()
    folder_path = results.run_folder(folder)
    (folder_path / "runs").mkdir(parents=True, exist_ok=True)
    plan_file = folder_path / "plan.json"
    if plan_file.is_file():
        old = json.loads(plan_file.read_text())
        if sorted(r["run_id"] for lane in old["lanes"] for r in lane["runs"]) == sorted(
            r.run_id for lane in lanes for r in lane.runs
        ):
            return folder_path, lanes_from_plan(old)
    results.write_json_atomic(folder_path / "topology.json", topo.to_dict())
    results.write_json_atomic(
        plan_file,
        {
            **request,
            "studies": {name: [c.model_dump() for c in configs] for name, configs in studies.items()},
            "lanes": [lane.to_json() for lane in lanes],
            "runs": count_runs(lanes),
            "created_at": results.now(),
        },
    )
    return folder_path, lanes


def run_lanes(
    lanes: list[Lane],
    folder_path: Path,
    max_workers: int | None = None,
    log: Callable[[str], None] = print,
    on_settled: Callable[[str, bool], None] | None = None,
) -> list[LaneOutcome]:
    """Measure every lane without Airflow: GPUs in parallel (up to ``max_workers``), each GPU's lanes in turn.

    Each GPU takes its lanes in :func:`plan.lanes_by_device` order (repeats ABBA, multi-GPU patterns in one common
    order). Multi-GPU patterns (``hardware.together``) need all their GPUs at once: ``max_workers`` is
    raised to the number of GPUs that take part, and those GPUs start first. One GPU at a time: no run's
    node is shared with another lane's (``node_shared_with`` emptied). Stopped by Ctrl-C, SIGTERM or SIGHUP
    (:mod:`numa_ops.stopping`): every lane's worker is ended and its runs left recorded as killed, then it raises.
    """
    on_device = lanes_by_device(lanes)
    workers = max(1, len(pattern_gpus(lanes)), min(max_workers or len(on_device), len(on_device)))
    supervisors: list[LaneSupervisor] = []
    stopped: list[str] = []
    guard = threading.Lock()

    def one_device(device_lanes: list[Lane]) -> list[LaneOutcome]:
        outcomes = []
        for lane in device_lanes:
            supervisor = LaneSupervisor(lane if workers > 1 else lane.alone(), folder_path, log=log,
                                        on_settled=on_settled)
            with guard:
                if stopped:
                    break
                supervisors.append(supervisor)
            outcomes.append(supervisor.run())
        return outcomes

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        with stopping.raise_on_signals():
            futures = [pool.submit(one_device, device_lanes) for device_lanes in on_device.values()]
            return [o for future in futures for o in future.result()]
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP: every worker ended, its runs recorded as killed
        reason = stopping.of(exc).reason
        with guard:
            stopped.append(reason)
            active = list(supervisors)
        for supervisor in active:
            supervisor.stop(reason)
        raise
    finally:
        pool.shutdown(wait=True)


SUMMARY_KEYS = ("planned_runs", "successful_runs", "failed_runs", "missing_runs")


class RunCounts(TypedDict):
    """A folder summary's run counts (:data:`SUMMARY_KEYS`); None: not known (no plan.json)."""

    planned_runs: int | None
    successful_runs: int | None
    failed_runs: int | None
    missing_runs: int | None


class LoadedJson(TypedDict):
    """What ``load_duckdb`` returns: each run folder's run counts by folder name (one host: one folder), the counts
    added up, and what DuckDB loaded."""

    summaries: dict[str, RunCounts]
    summary: RunCounts
    load: dict[str, int]


class FolderLocationsJson(TypedDict):
    """Where one run folder's results are."""

    folder: str
    results_json: str
    experiment_summary_json: str
    experiment_log: str
    report: str
    summary: RunCounts


class LocationsJson(TypedDict):
    """Where results are (``latest.json``, the report task's XCom): each run folder's by folder name (one host:
    one folder, one per GPU host otherwise), the database, the all-runs report, and the run counts added up."""

    folders: dict[str, FolderLocationsJson]
    duckdb: str
    report_all_runs: str
    summary: RunCounts


FOLDER_FILES = ("results_json", "experiment_summary_json", "experiment_log", "report")  # a folder's own, in order


def _distinct_folders(folder_paths: Path | list[Path]) -> list[Path]:
    folders = [folder_paths] if isinstance(folder_paths, Path) else list(dict.fromkeys(folder_paths))
    if not folders:
        raise ValueError("no run folder given")
    return folders


def _counts(summary: results.SummaryJson) -> RunCounts:
    """A folder summary's run counts."""
    return RunCounts(planned_runs=summary["planned_runs"], successful_runs=summary["successful_runs"],
                     failed_runs=summary["failed_runs"], missing_runs=summary["missing_runs"])


def _sum(counts: list[int | None]) -> int | None:
    """Counts added up; None when one is unknown."""
    return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


def _added_up(summaries: list[RunCounts]) -> RunCounts:
    """Several folders' summaries added up (a count unknown in one folder, no plan.json there, stays unknown)."""
    return RunCounts(planned_runs=_sum([s["planned_runs"] for s in summaries]),
                     successful_runs=_sum([s["successful_runs"] for s in summaries]),
                     failed_runs=_sum([s["failed_runs"] for s in summaries]),
                     missing_runs=_sum([s["missing_runs"] for s in summaries]))


def summarize_and_load(folder_paths: Path | list[Path]) -> LoadedJson:
    """Write each folder's results.json and summary; load DuckDB once, from every run folder (so it catches up).
    ``summaries`` holds each folder's counts by folder name, ``summary`` adds them up."""
    from numa_ops import db

    folders = _distinct_folders(folder_paths)
    summaries = {f.name: _counts(results.finalize(f)) for f in folders}
    counts = db.load_runs(db.run_folders())
    return LoadedJson(summaries=summaries, summary=_added_up(list(summaries.values())), load=counts)


def _saved_topology(folder_path: Path) -> TopologyJson | None:
    topo_file = folder_path / "topology.json"
    return json.loads(topo_file.read_text()) if topo_file.is_file() else None


def _locations(folder_path: Path, run_report: Path) -> FolderLocationsJson:
    summary = json.loads((folder_path / "experiment_summary.json").read_text())
    return FolderLocationsJson(
        folder=str(folder_path),
        results_json=str(folder_path / "results.json"),
        experiment_summary_json=str(folder_path / "experiment_summary.json"),
        experiment_log=str(folder_path / "experiment.log"),
        report=str(run_report),
        summary=_counts(summary),
    )


def write_reports(folder_paths: Path | list[Path]) -> LocationsJson:
    """Each folder's report and, once, the cumulative one; returns (and saves to latest.json) where things are:
    each folder's files by folder name, in order, and ``summary`` adding their counts up."""
    from numa_ops import db, report

    folders = _distinct_folders(folder_paths)
    topologies = {f.name: _saved_topology(f) for f in folders}
    run_reports = {
        f.name: report.write_report(f / "report", f"numa-lab: {f.name}", folder=f.name, topology=topologies[f.name])
        for f in folders
    }
    # the host's notes belong on the all-runs page only when every folder was measured on the same host
    shared = list(topologies.values())
    topology = shared[0] if all(t == shared[0] for t in shared) else None
    all_report = report.write_report(paths.outputs_dir() / "report", "numa-lab: all runs", topology=topology)
    each = {f.name: _locations(f, run_reports[f.name]) for f in folders}
    where = LocationsJson(folders=each, duckdb=str(db.db_path()), report_all_runs=str(all_report),
                          summary=_added_up([w["summary"] for w in each.values()]))
    results.write_json_atomic(paths.outputs_dir() / LATEST, where)
    return where
