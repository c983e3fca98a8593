"""Read: everything one report shows, in one pass over the database and the run folder's files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from numa_ops import db
from numa_ops.db.report_queries import read_report_frames
from numa_ops.estimate import EstimateJson
from numa_ops.gate import GateVerdict
from numa_ops.labels import host_memory
from numa_ops.report.format import shapes
from numa_ops.roles import SkippedStudy


@dataclass(frozen=True)
class ReportData:
    """The frames a report draws on (``numa_ops.db.report_queries``) and what the run folder says about itself."""

    lanes: pd.DataFrame
    failures: pd.DataFrame
    actual_time: pd.DataFrame
    transfer: pd.DataFrame
    compile: pd.DataFrame
    scaling: pd.DataFrame
    crossover_models: pd.DataFrame
    crossover: pd.DataFrame
    penalty_runs: pd.DataFrame
    law_points: pd.DataFrame
    penalty: pd.DataFrame
    split: pd.DataFrame
    noise: pd.DataFrame
    recommendations: pd.DataFrame
    compile_speedup: pd.DataFrame
    regressions: pd.DataFrame
    paired: pd.DataFrame  # the paired_penalty view: one row per comparison of a paired run
    gate: GateVerdict | None = None  # the run folder's gate.json
    estimate: EstimateJson | None = None  # the run folder's estimate.json (what plan_runs expected it to cost)
    skipped_studies: tuple[SkippedStudy, ...] = ()  # the run folder's plan.json: studies its host could not run, why
    prediction_points: pd.DataFrame = field(default_factory=pd.DataFrame)  # db.prediction_points: the laws' points


Source = Path | duckdb.DuckDBPyConnection  # the database file, or a connection already open on it


def read_report_data(source: Source | None = None, folder: str | None = None, run_folder: Path | None = None,
                     lock_timeout_s: float = db.LOCK_TIMEOUT_S) -> ReportData:
    """One read of ``folder``'s runs (or all runs) into a ``ReportData``; the database is let go on return.

    A path is read under the loads' lock (``db.read_connection``, waiting for a running load up to
    ``lock_timeout_s``); a connection is used as it is. ``run_folder`` is where gate.json and estimate.json are.
    """
    if isinstance(source, duckdb.DuckDBPyConnection):
        frames = read_report_frames(source, folder)
    else:
        with db.read_connection(source or db.db_path(), lock_timeout_s) as con:
            frames = read_report_frames(con, folder)
    names = {f.name for f in fields(ReportData)}
    return ReportData(**{k: v for k, v in in_words(frames).items() if k in names},
                      gate=gate_verdict(run_folder), estimate=_json(run_folder, "estimate.json"),
                      skipped_studies=tuple(SkippedStudy.from_json(s) for s in
                                            (_json(run_folder, "plan.json") or {}).get("skipped_studies") or ()))


def in_words(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The frames as the report says them (the SQL returns raw columns): each lane's and transfer row's host
    memory, and each scaling and crossover line's series, in :mod:`numa_ops.labels`' words."""
    out = dict(frames)
    for name in ("lanes", "transfer"):
        if name in out:
            out[name] = out[name].assign(host_memory=[host_memory(v) for v in out[name]["pinned_memory"]])
    if "scaling" in out:
        scaling = out["scaling"]
        studies = [f"{s} " if isinstance(s, str) and s else "" for s in scaling["study"]]
        out["scaling"] = scaling.assign(series=pd.Series(studies, index=scaling.index, dtype=object)
                                        + shapes(scaling, memory=True))
    if "crossover_models" in out:
        out["crossover_models"] = out["crossover_models"].assign(series=shapes(out["crossover_models"], memory=True))
    return out


def _json(run_folder: Path | None, name: str) -> dict[str, Any] | None:
    path = run_folder / name if run_folder else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def gate_verdict(run_folder: Path | None) -> GateVerdict | None:
    """The run folder's gate verdict: its gate.json, else judged now against its phase's gate (the DAG's gate task
    runs after the report and judges the same records the same way); None for a run of no phase."""
    if run_folder is None:
        return None
    verdict = _json(run_folder, "gate.json")
    if verdict is not None:
        return GateVerdict.from_json(verdict)
    plan = _json(run_folder, "plan.json")
    phase = (plan or {}).get("phase")
    if not phase:
        return None
    from numa_ops.gate import judge_run_folder
    from numa_ops.phases import load_phases

    known = load_phases()
    return judge_run_folder(run_folder, known[phase].gate) if phase in known else None
