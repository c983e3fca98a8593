"""The run folders under ``outputs/`` as the UI lists them, and the folder(s) a DAG run wrote.

A DAG run's folder is named by :mod:`numa_ops.run_folder` from the DAG run; it is found again from its name
and the phase its ``plan.json`` names, without Airflow's database; a run given a resume folder on its form is
found by that folder name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numa_ops import paths
from numa_ops.run_folder import REFUSED, FolderName, dag_run_token
from numa_ops.run_request import RunRequest

REPORT = "report/index.html"
ALL_RUNS_REPORT = "report/index.html"  # under outputs/ itself: the cumulative report
SUMMARY_FILES = ("experiment_summary.json", "plan.json", "estimate.json")


@dataclass(frozen=True)
class RunFolder:
    """One run folder as the nav page shows it (fields missing from its files are None)."""

    name: str
    phase: str | None
    created_at: str | None
    planned_runs: int | None
    successful_runs: int | None
    failed_runs: int | None
    gate_passed: bool | None
    gate_summary: str | None
    has_report: bool
    dag_run: str | None = None
    overrides: tuple[str, ...] = ()  # the form's overrides and sweeps (or a CLI run's overrides)
    num_samples: tuple[int, ...] = ()  # each distinct experiment.test.num_samples the plan holds
    refused: str | None = None  # the sentence of a request refused after the plan was written
    files: tuple[str, ...] = ()  # which of SUMMARY_FILES exist

    @property
    def report(self) -> str:
        return f"{self.name}/{REPORT}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_folder(folder: Path) -> RunFolder:
    """A run folder's plan, summary and gate verdict, parsed into a :class:`RunFolder`."""
    plan, summary, gate, refused = (_read_json(folder / f)
                                    for f in ("plan.json", "experiment_summary.json", "gate.json", REFUSED))
    request = RunRequest.from_plan(plan)
    return RunFolder(
        name=folder.name,
        phase=plan.get("phase"),
        created_at=plan.get("created_at"),
        planned_runs=summary.get("planned_runs", plan.get("runs")),
        successful_runs=summary.get("successful_runs"),
        failed_runs=summary.get("failed_runs"),
        gate_passed=gate.get("passed") if gate else None,
        gate_summary=gate.get("summary") if gate else None,
        has_report=(folder / REPORT).is_file(),
        dag_run=request.dag_run,
        overrides=request.overrides,
        num_samples=request.num_samples,
        refused=refused.get("sentence") if refused else None,
        files=tuple(name for name in SUMMARY_FILES if (folder / name).is_file()),
    )


def run_folders(outputs: Path | None = None) -> list[RunFolder]:
    """Every folder with a ``plan.json`` under the outputs folder, newest first."""
    outputs = outputs or paths.outputs_dir()
    folders = [read_folder(p.parent) for p in outputs.glob("*/plan.json") if not p.parent.is_symlink()]
    return sorted(folders, key=lambda f: (f.created_at or "", f.name), reverse=True)


def folders_of_run(dag_id: str, run_id: str, outputs: Path | None = None,
                   resume_folder: str | None = None) -> list[str]:
    """The folder(s) that DAG run ``dag_id``/``run_id`` planned into (one per host), sorted.

    ``resume_folder`` is the form's ``folder`` of that run, if it gave one (then the folder has that name,
    plus ``_<host>`` on GPU hosts).
    """
    outputs = outputs or paths.outputs_dir()
    found = []
    for plan in outputs.glob("*/plan.json"):
        folder = plan.parent
        if folder.is_symlink():
            continue
        parsed = FolderName.parse(folder.name)
        named = parsed is not None and parsed.made_for(dag_run_token(dag_id, run_id))
        resumed = bool(resume_folder) and (folder.name == resume_folder or folder.name.startswith(f"{resume_folder}_"))
        if (named or resumed) and _read_json(plan).get("phase") == dag_id:
            found.append(folder.name)
    return sorted(found)
