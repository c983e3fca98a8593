"""The steps of a phase, shared by the Airflow DAGs and the command line.

plan (config x topology -> lanes, written to ``plan.json``) -> lanes measured -> finish
(``results.json``, summary, DuckDB load, reports).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from numa_ops import paths, results, settings
from numa_ops.config import ExperimentConfig, load_experiment, split_experiment
from numa_ops.estimate import model_run_seconds
from numa_ops.plan import as_rerun, build_plan, count_runs, lanes_by_device, pattern_gpus
from numa_ops.specs import Lane, lanes_from_plan
from numa_ops.supervise import LaneOutcome, LaneSupervisor
from numa_ops.topology import Topology

LATEST = "latest.json"


def folder_name(experiment: str, when: datetime | None = None, token: str = "") -> str:
    """``<experiment>_<UTC time>_<6 hex>``: one folder per invocation, stable for its retries."""
    when = when or datetime.now(UTC)
    digest = hashlib.sha1(f"{experiment}|{token or when.isoformat()}".encode()).hexdigest()[:6]
    return paths.safe_name(f"{experiment}_{when.strftime('%Y%m%dT%H%M%S')}_{digest}", "run folder")


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
        raise OutputsError(f"outputs folder {out} is not writable ({exc.strerror or exc}); nothing was started") from None
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
    return write_plan(folder or folder_name(experiment), configs, topo, {"experiment": experiment, "overrides": overrides})


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
    node is shared with another lane's (``node_shared_with`` emptied).
    """
    on_device = lanes_by_device(lanes)
    workers = max(1, len(pattern_gpus(lanes)), min(max_workers or len(on_device), len(on_device)))

    def one_device(device_lanes: list[Lane]) -> list[LaneOutcome]:
        return [LaneSupervisor(lane if workers > 1 else lane.alone(), folder_path, log=log,
                               on_settled=on_settled).run() for lane in device_lanes]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [o for outcomes in pool.map(one_device, on_device.values()) for o in outcomes]


SUMMARY_KEYS = ("planned_runs", "successful_runs", "failed_runs", "missing_runs")


def _distinct_folders(folder_paths: Path | list[Path]) -> list[Path]:
    folders = [folder_paths] if isinstance(folder_paths, Path) else list(dict.fromkeys(folder_paths))
    if not folders:
        raise ValueError("no run folder given")
    return folders


def _counts(summary: dict[str, Any]) -> dict[str, Any]:
    """A folder summary's run counts."""
    return {k: summary[k] for k in SUMMARY_KEYS}


def _added_up(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Several folders' summaries added up (a count unknown in one folder, no plan.json there, stays unknown)."""
    return {k: None if any(s[k] is None for s in summaries) else sum(s[k] for s in summaries) for k in SUMMARY_KEYS}


def summarize_and_load(folder_paths: Path | list[Path]) -> dict[str, Any]:
    """Write each folder's results.json and summary; load DuckDB once, from every run folder (so it catches up).

    One folder: ``{"summary", "load"}``. Several (one per GPU host): ``"summary"`` adds theirs up and
    ``"summaries"`` holds each folder's, by folder name.
    """
    from numa_ops import db

    folders = _distinct_folders(folder_paths)
    summaries = {f.name: _counts(results.finalize(f)) for f in folders}
    counts = db.load_runs(db.run_folders())
    if len(folders) == 1:
        return {"summary": summaries[folders[0].name], "load": counts}
    return {"summary": _added_up(list(summaries.values())), "summaries": summaries, "load": counts}


def _saved_topology(folder_path: Path) -> dict[str, Any] | None:
    topo_file = folder_path / "topology.json"
    return json.loads(topo_file.read_text()) if topo_file.is_file() else None


def _locations(folder_path: Path, run_report: Path, all_report: Path) -> dict[str, Any]:
    from numa_ops import db

    summary = json.loads((folder_path / "experiment_summary.json").read_text())
    return {
        "folder": str(folder_path),
        "results_json": str(folder_path / "results.json"),
        "experiment_summary_json": str(folder_path / "experiment_summary.json"),
        "experiment_log": str(folder_path / "experiment.log"),
        "duckdb": str(db.db_path()),
        "report": str(run_report),
        "report_all_runs": str(all_report),
        "summary": _counts(summary),
    }


def write_reports(folder_paths: Path | list[Path]) -> dict[str, Any]:
    """Each folder's report and, once, the cumulative one; returns (and saves to latest.json) where things are.

    One folder: that folder's paths and summary. Several (one per GPU host): each per-folder key
    (``folder``, ``results_json``, ``experiment_summary_json``, ``experiment_log``, ``report``) lists
    every folder's, in order; ``summary`` adds them up, ``summaries`` holds each folder's.
    """
    from numa_ops import report

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
    each = [_locations(f, run_reports[f.name], all_report) for f in folders]
    if len(each) == 1:
        where = each[0]
    else:
        where = {key: [w[key] for w in each] for key in ("folder", "results_json", "experiment_summary_json",
                                                        "experiment_log", "report")}
        where.update(
            duckdb=each[0]["duckdb"],
            report_all_runs=str(all_report),
            summary=_added_up([w["summary"] for w in each]),
            summaries={Path(w["folder"]).name: w["summary"] for w in each},
        )
    results.write_json_atomic(paths.outputs_dir() / LATEST, where)
    return where
