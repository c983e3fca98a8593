"""Which names the trigger form's ``folder`` (resume folder) may take: an existing run folder of the same
phase, or a new name that clashes with nothing the outputs folder holds or will hold (the all-runs report,
the DuckDB files, ``latest.json``). Checked by the form in the API server and again by ``plan_runs``."""

from __future__ import annotations

import json
from pathlib import Path

from numa_ops import paths

RESERVED = ("report", "latest.json")  # what outputs/ itself holds beside the run folders
RESERVED_PREFIXES = ("numa_lab.",)  # the database, its read copy, its lock and write-ahead log


class FolderRefused(ValueError):
    """A resume folder that is not this phase's run folder nor a free name; the message says why."""


def check(folder: str, dag_id: str | None, hosts: list[str] | None = None, outputs: Path | None = None) -> None:
    """Refuse ``folder`` (as ``<folder>_<host>`` for each of ``hosts``) unless it is a run folder of ``dag_id``
    under ``outputs`` (``dag_id`` None: of an experiment run outside any phase) or a name that is free and not
    reserved."""
    paths.safe_name(folder, "folder")
    outputs = outputs or paths.outputs_dir()
    for name in [f"{folder}_{host}" for host in hosts] if hosts else [folder]:
        _check_one(name, dag_id, outputs)


def _check_one(name: str, dag_id: str | None, outputs: Path) -> None:
    if name in RESERVED or name.startswith(RESERVED_PREFIXES):
        raise FolderRefused(f"folder {name!r} is refused: outputs/{name} is numa-lab's own "
                            f"({'the all-runs report' if name == 'report' else 'not a run folder'}); "
                            "choose another name, or an existing run folder of this phase to resume")
    path = outputs / name
    if not path.exists() and not path.is_symlink():
        return  # a new run folder
    if path.is_symlink() or not path.is_dir() or not (path / "plan.json").is_file():
        raise FolderRefused(f"folder {name!r} is refused: outputs/{name} exists and is not a run folder; "
                            "choose another name, or an existing run folder of this phase to resume")
    try:
        phase = json.loads((path / "plan.json").read_text()).get("phase")
    except (OSError, ValueError, AttributeError):
        phase = None
    if phase != dag_id:
        mine = dag_id or "an experiment run outside any phase"
        raise FolderRefused(f"folder {name!r} is refused: outputs/{name} is a run folder of "
                            f"{phase or 'an experiment run outside any phase'}, not of {mine}; choose another name, "
                            f"or a run folder of {mine} to resume")
