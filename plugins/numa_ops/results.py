"""Run records: one JSON file per run, written atomically; ``results.json`` and the summary.

Layout of a run folder ``outputs/<folder>/``::

    plan.json                 the lanes and their run specs
    runs/<run_id>.json        one record per run, written when the run ends
    results.json              every record, as a list (the research plan's jq commands read it)
    experiment_summary.json   counts and the headline numbers
    experiment.log            every lane's worker output, line by line
    quarantine/               run files that could not be read, with the reason
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from pydantic import ValidationError

from numa_ops import paths
from numa_ops.record import RECORD_SCHEMA, ArmPlace, Environment, RunRecord
from numa_ops.roles import SkippedStudy, SkippedStudyJson

if TYPE_CHECKING:
    from numa_ops.specs import RunSpec

__all__ = ["RECORD_SCHEMA", "RunRecord"]


class FailureJson(TypedDict):
    """A failed run in a folder summary."""

    run_id: str
    error: str | None


class ThroughputJson(TypedDict):
    """A successful run's headline in a folder summary."""

    run_id: str
    model: str | None
    lane: str | None
    samples_per_s: float | None


class GroupJson(TypedDict):
    """A multi-GPU pattern (``hardware.together``) in a folder summary (:func:`groups`)."""

    id: str
    gpus: list[int]
    size: int
    complete: bool
    failed: list[str]
    samples_per_s: dict[str, float | None]  # GPU index -> its samples/s
    aggregate_samples_per_s: float | None
    start_skew_s: float | None
    overlap_s: float | None


class SummaryJson(TypedDict):
    """A run folder's summary (``experiment_summary.json``; :func:`summarize`, with the skipped studies in
    :func:`finalize`)."""

    folder: str
    experiment: str | None
    planned_runs: int | None
    recorded_runs: int
    successful_runs: int
    failed_runs: int
    missing_runs: int | None
    devices: list[str]
    failures: list[FailureJson]
    throughput: list[ThroughputJson]
    groups: list[GroupJson]
    written_at: str
    skipped_studies: NotRequired[list[SkippedStudyJson]]


def now() -> str:
    """UTC time stamp in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def run_folder(folder: str, base: Path | None = None) -> Path:
    """The folder of one experiment invocation, inside the outputs folder."""
    return paths.inside(base or paths.outputs_dir(), paths.safe_name(folder, "run folder"))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` so readers see the old file or the new one, never half of one."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record_path(folder_path: Path, run_id: str) -> Path:
    """Where a run's record lives."""
    return paths.inside(folder_path, "runs", paths.safe_name(run_id, "run_id") + ".json")


def base_record(spec: RunSpec, environment: Environment | None = None, success: bool = False,
                **fields: Any) -> RunRecord:
    """A record with the fields every record has, taken from its run spec, and ``fields`` (not a success until
    it is said to be one); ``reproduce`` (what a rerun needs) takes its versions and machine from the worker's
    ``environment``."""
    from numa_ops import reproduce

    paired = {"paired": spec.paired, "arms": [ArmPlace(**a.to_json()) for a in spec.arms]} if spec.paired else {}
    return RunRecord.model_validate({
        **paired,  # placement_mode paired: the kind of arms and where each is
        "schema": RECORD_SCHEMA,
        "run_id": spec.run_id,
        "folder": spec.folder,
        "experiment": spec.experiment,
        "study": spec.study,
        "sweep_point": spec.sweep_point,
        "lane": spec.lane,
        "gpu_id": spec.gpu_id,
        "numa_node": spec.cpu_node,
        "cpu_node": spec.cpu_node,
        "mem_node": spec.mem_node,
        "placement": spec.placement,
        "numa_distance": spec.numa_distance,
        "model": spec.model.model_dump(),
        "test": spec.test.model_dump(),
        "pooled": bool(spec.pool),  # hardware.spread: measured by whichever lane took it
        "group_id": spec.group.id if spec.group else None,  # hardware.together: the multi-GPU pattern's run
        "repeat": spec.repeat,  # which of test.repeats worker processes measured it (0-based)
        "placement_mode": spec.placement_mode,  # process: numactl binds all; pool: the pool alone
        "pool_node": spec.host_pool_node,  # the node the host pool was put on
        "node_shared_with": list(spec.node_shared_with),  # other devices' lanes on its CPU node
        "reproduce": reproduce.facts(spec, environment),
        "rerun_of": spec.rerun_of,  # a rerun: the run it measured again
        "success": success,
        **fields,
    })


def failed_record(spec: RunSpec, reason: str, **extra: Any) -> RunRecord:
    """A record for a run that did not finish (crash, timeout, kill, error)."""
    return base_record(spec, error=reason, duration=None, finished_at=now(), metrics=None, **extra)


def write_record(folder_path: Path, record: RunRecord) -> Path:
    """Write ``record`` to its file in ``folder_path``, atomically; return the file's path."""
    path = record_path(folder_path, record.run_id)
    write_json_atomic(path, record.to_json())
    return path


def parse_record(data: Any) -> RunRecord:
    """A record from its parsed JSON; raise ValueError if it is not one."""
    if not isinstance(data, dict) or "run_id" not in data or "success" not in data:
        raise ValueError("not a run record (no run_id or success)")
    try:
        return RunRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"not a run record: {where}: {first['msg']} ({exc.error_count()} error(s))") from None


def read_record(path: Path) -> RunRecord | None:
    """A record, or None if the file is missing; raise ValueError if it is not a record."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable run file: {exc}") from None
    return parse_record(data)


def successful(folder_path: Path, run_id: str) -> bool:
    """Whether a run already has a successful record (it is never measured again)."""
    try:
        record = read_record(record_path(folder_path, run_id))
    except ValueError:
        return False
    return bool(record and record.success)


def quarantine(path: Path, reason: str) -> Path:
    """Move an unreadable run file aside with a note saying why."""
    target_dir = path.parent.parent / "quarantine"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / path.name
    os.replace(path, target)
    (target_dir / (path.name + ".reason.txt")).write_text(reason + "\n")
    return target


def collect(folder_path: Path) -> list[RunRecord]:
    """All readable records of a run folder, by run_id; unreadable ones are quarantined."""
    records = []
    for path in sorted((folder_path / "runs").glob("*.json")):
        try:
            record = read_record(path)
        except ValueError as exc:
            quarantine(path, str(exc))
            continue
        if record is not None:
            records.append(record)
    return records


def summarize(folder: str, records: list[RunRecord], planned: int | None = None) -> SummaryJson:
    """The experiment summary: counts, failures and the headline throughput per run."""
    ok = [r for r in records if r.success]
    return {
        "folder": folder,
        "experiment": records[0].experiment if records else None,
        "planned_runs": planned,
        "recorded_runs": len(records),
        "successful_runs": len(ok),
        "failed_runs": len(records) - len(ok),
        "missing_runs": None if planned is None else max(planned - len(records), 0),
        "devices": sorted({str(r.device) for r in ok}),
        "failures": [{"run_id": r.run_id, "error": r.error} for r in records if not r.success],
        "throughput": [
            {"run_id": r.run_id, "model": r.model.name if r.model else None, "lane": r.lane,
             "samples_per_s": r.samples_per_s}
            for r in ok
        ],
        "groups": groups(records),
        "written_at": now(),
    }


def groups(records: list[RunRecord]) -> list[GroupJson]:
    """Multi-GPU patterns (``hardware.together``): each GPU's samples/s and the aggregate of the group.

    ``complete``: every GPU of the pattern measured successfully, at the same time (none absent).
    ``start_skew_s``: spread of the moments the GPUs left the barrier; ``overlap_s``: how long all
    of them were timing at once.
    """
    by_group: dict[str, list[RunRecord]] = {}
    for r in records:
        if r.group_id:
            by_group.setdefault(r.group_id, []).append(r)
    out: list[GroupJson] = []
    for group_id, members in sorted(by_group.items()):
        ok = [r for r in members if r.success and r.metrics is not None]
        info = [r.group or {} for r in ok]
        size = max((i.get("size") or 0 for i in info), default=0) or len(members)
        windows = [(r.metrics.timed_from, r.metrics.timed_to) for r in ok if r.metrics]
        released = [i["released_at"] for i in info if i.get("released_at")]
        rates = {str(r.gpu_id): r.samples_per_s for r in ok}
        out.append({
            "id": group_id,
            "gpus": sorted(r.gpu_id for r in members if r.gpu_id is not None),
            "size": size,
            "complete": len(ok) == size and not any(i.get("absent") for i in info),
            "failed": sorted(r.run_id for r in members if not r.success),
            "samples_per_s": rates,
            "aggregate_samples_per_s": sum(v or 0.0 for v in rates.values()) if ok else None,
            "start_skew_s": max(released) - min(released) if len(released) > 1 else None,
            "overlap_s": _overlap(windows),
        })
    return out


def _overlap(windows: list[tuple[float | None, float | None]]) -> float | None:
    """How long every window was open at once (None without windows, or with one not known)."""
    if not windows or any(a is None or b is None for a, b in windows):
        return None
    return min(b for _, b in windows if b is not None) - max(a for a, _ in windows if a is not None)


def skipped_studies(folder_path: Path) -> list[SkippedStudy]:
    """The studies the folder's plan skipped on its host, each with its role and the reason (``plan.json``)."""
    plan_file = folder_path / "plan.json"
    if not plan_file.is_file():
        return []
    return [SkippedStudy.from_json(s) for s in json.loads(plan_file.read_text()).get("skipped_studies") or []]


def finalize(folder_path: Path) -> SummaryJson:
    """Write ``results.json`` and ``experiment_summary.json`` (with the studies the plan skipped, and why) from the
    run records."""
    records = collect(folder_path)
    planned = None
    plan_file = folder_path / "plan.json"
    if plan_file.is_file():
        plan = json.loads(plan_file.read_text())
        planned = plan.get("runs") or len({r["run_id"] for lane in plan["lanes"] for r in lane["runs"]})
    summary = summarize(folder_path.name, records, planned)
    summary["skipped_studies"] = [s.to_json() for s in skipped_studies(folder_path)]
    write_json_atomic(folder_path / "results.json", [r.to_json() for r in records])
    write_json_atomic(folder_path / "experiment_summary.json", summary)
    return summary
