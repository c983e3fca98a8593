"""A run measured again: the same configuration in the same placement on this host, from its record's
``reproduce`` key, compared with the original through the nightly comparison (:mod:`numa_ops.compare`).

The baseline is the original's configuration as its run folder measured it (the original and its repeats, each
a worker process); the candidate is the rerun's processes. What differs between the two (host, GPU, CPU, versions,
code) is said before the comparison, which is made all the same.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from numa_ops import compare, db, paths, pipeline, results
from numa_ops.config import ConfigError, ExperimentConfig
from numa_ops.record import RunRecord
from numa_ops.reproduce import VERSION_KEYS, Reproduction, code_version
from numa_ops.specs import Lane
from numa_ops.topology import Topology


class RerunError(ValueError):
    """A run that cannot be measured again (no record of it, or a record that cannot say how)."""


@dataclass(frozen=True)
class RerunPlan:
    """What a rerun will measure: the original record, how to reproduce it, and the new folder's lanes."""

    original: RunRecord
    original_folder: Path
    reproduction: Reproduction
    folder_path: Path
    lanes: list[Lane]


def find_record(run_id: str, database: Path | None = None) -> tuple[RunRecord, Path]:
    """The record of ``run_id`` and its run folder: its run file under the outputs folder, else its DuckDB row
    (validated through the record model, as a run file is)."""
    name = paths.safe_name(run_id, "run_id") + ".json"
    for path in sorted(paths.outputs_dir().glob(f"*/runs/{name}")):
        record = results.read_record(path)
        if record is not None:
            return record, path.parent.parent
    database = database or db.db_path()
    if database.is_file():
        import json

        with db.read_connection(database) as con:
            row = con.execute("SELECT record FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is not None:
            record = results.parse_record(json.loads(row[0]))
            return record, paths.outputs_dir() / str(record.folder)
    raise RerunError(f"no record of run {run_id!r} under {paths.outputs_dir()} nor in {database}")


def rerun_config(reproduction: Reproduction, repeats: int | None = None) -> ExperimentConfig:
    """The experiment that measures the run again (``repeats`` worker processes: the original's when None)."""
    data = dict(reproduction.experiment)
    if repeats is not None:
        data["test"] = {**data["test"], "repeats": repeats}
    try:
        return ExperimentConfig.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"the record's experiment is not valid here: {exc}") from None


def plan_rerun(run_id: str, topo: Topology, repeats: int | None = None) -> RerunPlan:
    """Plan the rerun of ``run_id`` on this host into a new run folder; a placement the host lacks is refused with
    the planner's message (``PlacementError``) before anything is written."""
    original, original_folder = find_record(run_id)
    try:
        reproduction = Reproduction.of_record(original)
    except (KeyError, TypeError) as exc:
        raise RerunError(f"run {run_id}'s record does not say how to reproduce it (missing {exc})") from None
    cfg = rerun_config(reproduction, repeats)
    if reproduction.placement.gpu_id is None and topo.gpus:
        raise RerunError(f"run {run_id} ran on the CPU; {topo.host} has GPUs, where gpu_ids=all plans on them")
    study = reproduction.placement.study or "main"
    folder = pipeline.folder_name(f"{cfg.name}-rerun")
    folder_path, lanes = pipeline.write_plan(folder, {study: [cfg]}, topo,
                                             {"experiment": cfg.name, "rerun_of": run_id, "overrides": []},
                                             rerun_of=run_id)
    return RerunPlan(original, original_folder, reproduction, folder_path, lanes)


def differences(original: Reproduction, rerun: Reproduction) -> list[str]:
    """Where the rerun's machine or software is not the original's, one line each."""
    out = []
    pairs = [("host", original.host, rerun.host), ("GPU", original.gpu_model, rerun.gpu_model),
             ("CPU", original.cpu_model, rerun.cpu_model), ("code", original.code_version, rerun.code_version),
             *((k, original.versions.get(k), rerun.versions.get(k)) for k in VERSION_KEYS)]
    for what, was, now in pairs:
        if was != now:
            out.append(f"{what} differs: {was if was is not None else 'not recorded'} then, "
                       f"{now if now is not None else 'not recorded'} now")
    return out


def before_measuring(plan: RerunPlan) -> list[str]:
    """What is known to differ before anything is measured: the host and the code."""
    repro = plan.reproduction
    here = Reproduction(repro.experiment, repro.placement, repro.versions, repro.gpu_model, repro.cpu_model,
                        code_version(), socket.gethostname())
    return [line for line in differences(repro, here) if line.startswith(("host", "code"))]


class RerunResultJson(TypedDict):
    """A :class:`RerunResult` as JSON (``./numa-lab rerun --json``)."""

    differences: list[str]
    comparisons: list[compare.ComparisonJson]


@dataclass(frozen=True)
class RerunResult:
    """The rerun against its original: what differs, and the comparison rows (candidate = rerun)."""

    differences: list[str]
    rows: list[compare.Comparison]

    def to_json(self) -> RerunResultJson:
        return RerunResultJson(differences=self.differences, comparisons=[r.to_json() for r in self.rows])


def compare_with_original(plan: RerunPlan) -> RerunResult:
    """The original's configuration in its folder (baseline) against the rerun's records, by ``compare``."""
    key = compare.config_key(plan.original)
    baseline = [r for r in results.collect(plan.original_folder) if compare.config_key(r) == key] or [plan.original]
    candidate = results.collect(plan.folder_path)
    measured = [r for r in candidate if r.success]
    found = differences(plan.reproduction, Reproduction.of_record(measured[0])) if measured else []
    return RerunResult(found, compare.compare_records(baseline, candidate))
