"""The DuckDB file: a ``runs`` table loaded idempotently from run records, one writer at a time.

A run is stored once (primary key ``run_id``). A successful row is never replaced; a failed row
is replaced when the run is measured again. Loads take a file lock beside the database, so two
loads never race for DuckDB's single-writer lock: the second waits, then catches up.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from filelock import FileLock, Timeout

from numa_ops import paths, results

DB_NAME = "numa_lab.duckdb"
LOCK_TIMEOUT_S = 600

# column name, SQL type, how to read it from a record
COLUMNS: list[tuple[str, str]] = [
    ("run_id", "VARCHAR PRIMARY KEY"),
    ("folder", "VARCHAR"),
    ("experiment", "VARCHAR"),
    ("study", "VARCHAR"),
    ("sweep_point", "INTEGER"),
    ("lane", "VARCHAR"),
    ("device", "VARCHAR"),
    ("gpu_id", "INTEGER"),
    ("cpu_node", "INTEGER"),
    ("mem_node", "INTEGER"),
    ("placement", "VARCHAR"),
    ("model_name", "VARCHAR"),
    ("patch_size", "INTEGER"),
    ("depth", "INTEGER"),
    ("heads", "INTEGER"),
    ("dim", "INTEGER"),
    ("mlp_dim", "INTEGER"),
    ("parameters", "BIGINT"),
    ("num_samples", "INTEGER"),
    ("batch_size", "INTEGER"),
    ("channels", "INTEGER"),
    ("height", "INTEGER"),
    ("width", "INTEGER"),
    ("memory_size_mb", "INTEGER"),
    ("compile_model", "BOOLEAN"),
    ("success", "BOOLEAN"),
    ("error", "VARCHAR"),
    ("duration_s", "DOUBLE"),
    ("started_at", "TIMESTAMPTZ"),
    ("finished_at", "TIMESTAMPTZ"),
    ("samples_per_s", "DOUBLE"),
    ("h2d_ms_median", "DOUBLE"),
    ("h2d_ms_p95", "DOUBLE"),
    ("forward_ms_median", "DOUBLE"),
    ("forward_ms_p95", "DOUBLE"),
    ("d2h_ms_median", "DOUBLE"),
    ("d2h_ms_p95", "DOUBLE"),
    ("batch_ms_median", "DOUBLE"),
    ("batch_ms_p95", "DOUBLE"),
    ("batch_ms_p99", "DOUBLE"),
    ("h2d_bytes_per_batch", "BIGINT"),
    ("d2h_bytes_per_batch", "BIGINT"),
    ("h2d_gbps", "DOUBLE"),
    ("d2h_gbps", "DOUBLE"),
    ("execution", "VARCHAR"),
    ("d2h_mode", "VARCHAR"),
    ("pinned_memory", "BOOLEAN"),
    ("trials", "INTEGER"),
    ("ci_target_met", "BOOLEAN"),
    ("samples_per_s_ci_low", "DOUBLE"),
    ("samples_per_s_ci_high", "DOUBLE"),
    ("pipelined_samples_per_s", "DOUBLE"),
    ("ideal_samples_per_s", "DOUBLE"),
    ("fwd_gpu_ms", "DOUBLE"),
    ("launch_overhead_share", "DOUBLE"),
    ("regime", "VARCHAR"),
    ("flops_per_sample", "BIGINT"),
    ("gpu_util_pct_mean", "DOUBLE"),
    ("pcie_rx_mbps_max", "DOUBLE"),
    ("power_w_mean", "DOUBLE"),
    ("numa_distance", "INTEGER"),
    ("pool_fraction_on_node", "DOUBLE"),
    ("launch_cpu", "INTEGER"),
    ("launch_cpu_node", "INTEGER"),
    ("peak_gpu_mem_mb", "DOUBLE"),
    ("compile_s", "DOUBLE"),
    ("worker_startup_s", "DOUBLE"),
    ("host", "VARCHAR"),
    ("gpu_name", "VARCHAR"),
    ("driver", "VARCHAR"),
    ("torch_version", "VARCHAR"),
    ("cuda_runtime", "VARCHAR"),
    ("binding", "VARCHAR"),
    ("cpus_allowed", "VARCHAR"),
    ("mems_allowed", "VARCHAR"),
    ("record", "JSON"),
]
NAMES = [name for name, _ in COLUMNS]


VIEWS = {
    # Remote vs local placement per model x GPU x shape x execution, split by regime (a launch-bound
    # run's penalty is a penalty on the launching CPU, a transfer-bound run's on the copies).
    "numa_penalty": """
        WITH ok AS (SELECT * FROM runs WHERE success AND device = 'cuda'),
        grouped AS (
            SELECT host, any_value(gpu_name) AS gpu_name, gpu_id, model_name, depth, dim, height, width, batch_size,
                   coalesce(execution, 'eager') AS execution, coalesce(regime, 'unknown') AS regime,
                   count(*) FILTER (WHERE placement = 'local') AS local_runs,
                   count(*) FILTER (WHERE placement = 'remote') AS remote_runs,
                   median(samples_per_s) FILTER (WHERE placement = 'local') AS local_samples_per_s,
                   median(samples_per_s) FILTER (WHERE placement = 'remote') AS remote_samples_per_s,
                   median(h2d_gbps) FILTER (WHERE placement = 'local') AS local_h2d_gbps,
                   median(h2d_gbps) FILTER (WHERE placement = 'remote') AS remote_h2d_gbps
            FROM ok GROUP BY ALL
        )
        SELECT *,
               CASE WHEN remote_runs > 0 AND local_runs > 0 THEN 1 - remote_samples_per_s / local_samples_per_s END
                   AS throughput_penalty,
               CASE WHEN remote_runs > 0 AND local_runs > 0 THEN 1 - remote_h2d_gbps / local_h2d_gbps END AS h2d_penalty,
               CASE WHEN remote_runs = 0 THEN 'no remote placement measured: the host has one NUMA node, or none was requested'
                    WHEN local_runs = 0 THEN 'no local placement measured'
                    ELSE 'measured' END AS status
        FROM grouped
        ORDER BY model_name, gpu_id, height, batch_size, execution
    """,
    # The penalty per model configuration, largest first (measured rows only).
    "sensitivity_map": """
        SELECT model_name, depth, dim, regime, count(*) AS configurations,
               median(throughput_penalty) AS median_penalty, max(throughput_penalty) AS max_penalty,
               rank() OVER (ORDER BY median(throughput_penalty) DESC) AS rank
        FROM numa_penalty WHERE status = 'measured'
        GROUP BY ALL
    """,
    # Where a batch's time goes, per configuration: copies, the GPU's compute, launch overhead.
    "stage_breakdown": """
        SELECT host, any_value(gpu_name) AS gpu_name, model_name, depth, dim, height, batch_size,
               coalesce(execution, 'eager') AS execution, pinned_memory, count(*) AS runs,
               median(h2d_ms_median) AS h2d_ms, median(forward_ms_median) AS forward_ms,
               median(fwd_gpu_ms) AS fwd_gpu_ms, median(d2h_ms_median) AS d2h_ms,
               median(h2d_ms_median) / median(batch_ms_median) AS h2d_share,
               median(forward_ms_median) / median(batch_ms_median) AS forward_share,
               median(d2h_ms_median) / median(batch_ms_median) AS d2h_share,
               greatest(median(forward_ms_median) - median(fwd_gpu_ms), 0) / median(forward_ms_median) AS launch_share,
               mode(regime) AS regime
        FROM runs WHERE success AND device = 'cuda'
        GROUP BY ALL ORDER BY model_name, height, batch_size, execution
    """,
    # Per shape and execution mode: the smallest model (by FLOPs) whose GPU compute outlasts its copies.
    "crossover": """
        WITH s AS (
            SELECT host, height, batch_size, coalesce(execution, 'eager') AS execution, pinned_memory, model_name,
                   median(flops_per_sample) AS flops_per_sample, median(fwd_gpu_ms) AS gpu_ms,
                   median(h2d_ms_median + d2h_ms_median) AS copy_ms, mode(regime) AS regime
            FROM runs WHERE success AND device = 'cuda' AND fwd_gpu_ms IS NOT NULL GROUP BY ALL
        )
        SELECT host, height, batch_size, execution, pinned_memory,
               min(flops_per_sample) FILTER (WHERE gpu_ms > copy_ms) AS crossover_flops_per_sample,
               arg_min(model_name, flops_per_sample) FILTER (WHERE gpu_ms > copy_ms) AS first_compute_dominated_model,
               count(*) AS models, list(model_name || ':' || regime ORDER BY flops_per_sample) AS regimes
        FROM s GROUP BY ALL ORDER BY height, batch_size, execution
    """,
    # samples/s against model size, per experiment and execution mode (fits: numa_ops.analysis).
    "scaling": """
        SELECT experiment, coalesce(execution, 'eager') AS execution, device, height, batch_size, model_name,
               depth, dim, median(parameters) AS parameters, median(flops_per_sample) AS flops_per_sample,
               median(samples_per_s) AS samples_per_s, median(fwd_gpu_ms) AS fwd_gpu_ms, count(*) AS runs
        FROM runs WHERE success GROUP BY ALL ORDER BY experiment, depth, dim
    """,
    # torch.compile against eager for the same model, shape and placement.
    "compile_speedup": """
        SELECT model_name, lane, height, batch_size, coalesce(execution, 'eager') AS execution,
               median(samples_per_s) AS samples_per_s, median(compile_s) AS compile_s,
               median(CAST(record->>'$.metrics.compile_speedup' AS DOUBLE)) AS forward_speedup,
               median(CAST(record->>'$.metrics.compile_break_even_samples' AS DOUBLE)) AS break_even_samples,
               count(*) AS runs
        FROM runs WHERE success AND coalesce(execution, 'eager') IN ('compile', 'compile_reduce_overhead')
        GROUP BY ALL ORDER BY forward_speedup DESC NULLS LAST
    """,
    # The fastest lane and settings per model and shape, with the evidence behind it.
    "recommendations": """
        WITH ranked AS (
            SELECT model_name, height, lane, placement, coalesce(execution, 'eager') AS execution, batch_size,
                   pinned_memory, median(samples_per_s) AS samples_per_s, count(*) AS runs,
                   row_number() OVER (PARTITION BY model_name, height ORDER BY median(samples_per_s) DESC) AS pos
            FROM runs WHERE success GROUP BY model_name, height, lane, placement, execution, batch_size, pinned_memory
        )
        SELECT model_name, height, lane AS best_lane, placement, execution, batch_size, pinned_memory,
               samples_per_s, runs AS evidence_runs
        FROM ranked WHERE pos = 1 ORDER BY model_name, height
    """,
}


class StoreBusyError(RuntimeError):
    """Another load held the database for longer than the wait allowed."""


def db_path(base: Path | None = None) -> Path:
    """The DuckDB file (``outputs/numa_lab.duckdb``)."""
    return (base or paths.outputs_dir()) / DB_NAME


def _row(record: dict[str, Any]) -> list[Any]:
    metrics = record.get("metrics") or {}
    env = record.get("environment") or {}
    bind = env.get("binding") or {}
    model, test = record.get("model") or {}, record.get("test") or {}
    shape = test.get("tensor_shape") or [None, None, None]

    def stage(name: str, stat: str) -> Any:
        return (metrics.get(name) or {}).get(stat)

    values = {
        "run_id": record["run_id"],
        "folder": record.get("folder"),
        "experiment": record.get("experiment"),
        "study": record.get("study"),
        "sweep_point": record.get("sweep_point"),
        "lane": record.get("lane"),
        "device": record.get("device") or metrics.get("device"),
        "gpu_id": record.get("gpu_id"),
        "cpu_node": record.get("cpu_node"),
        "mem_node": record.get("mem_node"),
        "placement": record.get("placement"),
        "model_name": model.get("name"),
        "patch_size": model.get("patch_size"),
        "depth": model.get("depth"),
        "heads": model.get("heads"),
        "dim": model.get("dim"),
        "mlp_dim": model.get("mlp_dim"),
        "parameters": metrics.get("parameters"),
        "num_samples": test.get("num_samples"),
        "batch_size": test.get("batch_size"),
        "channels": shape[0],
        "height": shape[1],
        "width": shape[2],
        "memory_size_mb": test.get("memory_size_mb"),
        "compile_model": test.get("compile_model"),
        "success": bool(record.get("success")),
        "error": record.get("error"),
        "duration_s": record.get("duration"),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "samples_per_s": metrics.get("samples_per_s"),
        "h2d_ms_median": stage("h2d_ms", "median"),
        "h2d_ms_p95": stage("h2d_ms", "p95"),
        "forward_ms_median": stage("forward_ms", "median"),
        "forward_ms_p95": stage("forward_ms", "p95"),
        "d2h_ms_median": stage("d2h_ms", "median"),
        "d2h_ms_p95": stage("d2h_ms", "p95"),
        "batch_ms_median": stage("batch_ms", "median"),
        "batch_ms_p95": stage("batch_ms", "p95"),
        "batch_ms_p99": stage("batch_ms", "p99"),
        "h2d_bytes_per_batch": metrics.get("h2d_bytes_per_batch"),
        "d2h_bytes_per_batch": metrics.get("d2h_bytes_per_batch"),
        "h2d_gbps": metrics.get("h2d_gbps"),
        "d2h_gbps": metrics.get("d2h_gbps"),
        "execution": metrics.get("execution"),
        "d2h_mode": metrics.get("d2h_mode"),
        "pinned_memory": metrics.get("pool_pinned"),
        "trials": metrics.get("trials"),
        "ci_target_met": metrics.get("ci_target_met"),
        "samples_per_s_ci_low": (metrics.get("samples_per_s_ci") or {}).get("low"),
        "samples_per_s_ci_high": (metrics.get("samples_per_s_ci") or {}).get("high"),
        "pipelined_samples_per_s": metrics.get("pipelined_samples_per_s"),
        "ideal_samples_per_s": metrics.get("ideal_samples_per_s"),
        "fwd_gpu_ms": metrics.get("fwd_gpu_ms"),
        "launch_overhead_share": metrics.get("launch_overhead_share"),
        "regime": metrics.get("regime"),
        "flops_per_sample": metrics.get("flops_per_sample"),
        "gpu_util_pct_mean": (metrics.get("telemetry") or {}).get("gpu_util_pct_mean"),
        "pcie_rx_mbps_max": (metrics.get("telemetry") or {}).get("pcie_rx_mbps_max"),
        "power_w_mean": (metrics.get("telemetry") or {}).get("power_w_mean"),
        "numa_distance": record.get("numa_distance"),
        "pool_fraction_on_node": (metrics.get("pool_pages") or {}).get("fraction_on_intended"),
        "launch_cpu": metrics.get("launch_cpu"),
        "launch_cpu_node": metrics.get("launch_cpu_node"),
        "peak_gpu_mem_mb": metrics.get("peak_gpu_mem_mb"),
        "compile_s": metrics.get("compile_s"),
        "worker_startup_s": record.get("worker_startup_s"),
        "host": env.get("host"),
        "gpu_name": env.get("gpu_name"),
        "driver": env.get("driver"),
        "torch_version": env.get("torch"),
        "cuda_runtime": env.get("cuda_runtime"),
        "binding": bind.get("numactl"),
        "cpus_allowed": bind.get("cpus_allowed"),
        "mems_allowed": bind.get("mems_allowed"),
        "record": json.dumps(record, default=str, sort_keys=True),
    }
    return [values[name] for name in NAMES]


def _load_topologies(con: duckdb.DuckDBPyConnection, folders: list[Path]) -> None:
    """One topology snapshot per run folder (the host as it was when the plan was made)."""
    for folder in folders:
        snap = folder / "topology.json"
        if not snap.is_file():
            continue
        try:
            data = json.loads(snap.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        con.execute(
            "INSERT INTO topology VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (folder) DO NOTHING",
            [folder.name, data.get("host"), len(data.get("nodes", [])), len(data.get("gpus", [])),
             "; ".join(data.get("notes", [])), json.dumps(data)],
        )


REGRESSION_COLUMNS = [
    "night", "baseline", "config_key", "config", "tonight_mean", "tonight_low", "tonight_high",
    "baseline_mean", "baseline_low", "baseline_high", "change", "verdict", "error",
]


def save_verdicts(phase: str, verdicts: list[dict[str, Any]], accepted: bool, database: Path | None = None,
                  lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
    """Store a night's verdicts (again for the same night: replaced, never duplicated)."""
    database = database or db_path()
    with FileLock(str(database) + ".lock", timeout=lock_timeout_s), duckdb.connect(str(database)) as con:
        ensure_schema(con)
        con.execute("BEGIN TRANSACTION")
        nights = {v["night"] for v in verdicts}
        for night in nights:
            con.execute("DELETE FROM regressions WHERE night = ?", [night])
        con.executemany(
            f"INSERT INTO regressions VALUES (?, ?, {', '.join('?' for _ in REGRESSION_COLUMNS)}, now())",
            [[phase, accepted, *[v[c] for c in REGRESSION_COLUMNS]] for v in verdicts],
        )
        con.execute("COMMIT")


def last_accepted_night(phase: str, before: str, database: Path | None = None) -> str | None:
    """The latest accepted night of ``phase`` other than ``before`` (None: no baseline yet)."""
    database = database or db_path()
    if not database.exists():
        return None
    with duckdb.connect(str(database), read_only=True) as con:
        ensure_tables_exist = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'regressions'"
        ).fetchone()[0]
        if not ensure_tables_exist:
            return None
        row = con.execute(
            "SELECT night FROM regressions WHERE phase = ? AND accepted AND night <> ? "
            "GROUP BY night ORDER BY max(checked_at) DESC LIMIT 1",
            [phase, before],
        ).fetchone()
    return row[0] if row else None


def _load_trials(con: duckdb.DuckDBPyConnection, records: list[dict[str, Any]]) -> None:
    """One row per trial and timing mode of each (re)loaded run."""
    rows = []
    for rec in records:
        per_mode = ((rec.get("metrics") or {}).get("trial_samples_per_s") or {}) if rec.get("success") else {}
        for mode, values in per_mode.items():
            rows += [(rec["run_id"], i, mode, float(v)) for i, v in enumerate(values or [])]
    ids = [r["run_id"] for r in records]
    if ids:
        con.execute("DELETE FROM trials WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [ids])
    if rows:
        frame = pd.DataFrame(rows, columns=["run_id", "trial", "mode", "samples_per_s"])
        con.register("incoming_trials", frame)
        con.execute("INSERT INTO trials SELECT run_id, CAST(trial AS INTEGER), mode, samples_per_s FROM incoming_trials")
        con.unregister("incoming_trials")


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables if they are missing."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS trials (run_id VARCHAR, trial INTEGER, mode VARCHAR, samples_per_s DOUBLE, "
        "PRIMARY KEY (run_id, trial, mode))"
    )
    con.execute(
        "CREATE TABLE IF NOT EXISTS regressions (phase VARCHAR, accepted BOOLEAN, night VARCHAR, baseline VARCHAR, "
        "config_key VARCHAR, config VARCHAR, tonight_mean DOUBLE, tonight_low DOUBLE, tonight_high DOUBLE, "
        "baseline_mean DOUBLE, baseline_low DOUBLE, baseline_high DOUBLE, change DOUBLE, verdict VARCHAR, "
        "error VARCHAR, checked_at TIMESTAMPTZ, PRIMARY KEY (night, config_key))"
    )
    con.execute(
        "CREATE TABLE IF NOT EXISTS topology (folder VARCHAR PRIMARY KEY, host VARCHAR, numa_nodes INTEGER, "
        "gpus INTEGER, notes VARCHAR, snapshot JSON)"
    )
    cols = ",\n  ".join(f"{name} {sql}" for name, sql in COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS runs (\n  {cols}\n)")
    have = {row[0] for row in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()}
    for name, sql in COLUMNS:  # a database written by an older numa-lab gains the new columns
        if name not in have:
            con.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql.replace(' PRIMARY KEY', '')}")
    for name, body in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")


def _upsert(con: duckdb.DuckDBPyConnection, records: list[dict[str, Any]], before: dict[str, bool]) -> dict[str, int]:
    failed_rows = dict(con.execute("SELECT run_id, finished_at FROM runs WHERE NOT success").fetchall())
    fresh = [r for r in records if r["run_id"] not in before]

    def remeasured(r: dict[str, Any]) -> bool:  # a failed row is replaced only by a newer record
        if r["run_id"] not in failed_rows:
            return False
        if r.get("success"):
            return True
        stored, finished = failed_rows[r["run_id"]], r.get("finished_at")
        return stored is None or finished is None or datetime.fromisoformat(finished) != stored

    redo = [r for r in records if remeasured(r)]
    if fresh or redo:
        # One set-based insert from a DataFrame: row-by-row inserts take minutes for a night's runs.
        frame = pd.DataFrame([_row(r) for r in fresh + redo], columns=NAMES).astype(object)
        con.register("incoming", frame)
        casts = ", ".join(f"CAST({n} AS {sql.replace(' PRIMARY KEY', '')})" for n, sql in COLUMNS)
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in NAMES if n != "run_id")
        con.execute(
            f"INSERT INTO runs ({', '.join(NAMES)}) SELECT {casts} FROM incoming "
            f"ON CONFLICT (run_id) DO UPDATE SET {updates} WHERE NOT runs.success"
        )
        con.unregister("incoming")
        _load_trials(con, fresh + redo)
    return {"inserted": len(fresh), "rechecked_failed": len(redo), "unchanged": len(records) - len(fresh) - len(redo)}


def _read_new(folders: list[Path], stored_ok: set[str]) -> tuple[dict[str, dict[str, Any]], int]:
    """Records not yet stored as successful (those are final and are not read again), and how many were skipped.

    Unreadable files are quarantined.
    """
    records: dict[str, dict[str, Any]] = {}
    skipped = 0
    for folder in folders:
        for path in sorted((folder / "runs").glob("*.json")):
            if path.stem in stored_ok:
                skipped += 1
                continue
            try:
                record = results.read_record(path)
            except ValueError as exc:
                results.quarantine(path, str(exc))
                continue
            if record is not None:
                records[record["run_id"]] = record
    return records, skipped


def load(folders: list[Path], database: Path | None = None, lock_timeout_s: float = LOCK_TIMEOUT_S) -> dict[str, int]:
    """Load the run records of ``folders`` into the database; safe to run again or at once."""
    database = database or db_path()
    database.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(database) + ".lock", timeout=lock_timeout_s):
            with duckdb.connect(str(database)) as con:
                ensure_schema(con)
                before = dict(con.execute("SELECT run_id, success FROM runs").fetchall())
                records, skipped = _read_new(folders, {rid for rid, ok in before.items() if ok})
                con.execute("BEGIN TRANSACTION")
                counts = _upsert(con, list(records.values()), before)
                counts["unchanged"] += skipped
                _load_topologies(con, folders)
                con.execute("COMMIT")
                counts["total_rows"] = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    except Timeout:
        raise StoreBusyError(
            f"{database} is held by another load for over {lock_timeout_s:.0f} s; nothing was written, "
            "run the load again later (it catches up on every run file)"
        ) from None
    return counts


def run_folders(base: Path | None = None) -> list[Path]:
    """Every run folder under the outputs folder (those with a ``runs/`` subfolder)."""
    base = base or paths.outputs_dir()
    return sorted(p.parent for p in base.glob("*/runs") if p.is_dir())


def query(sql: str, params: list[Any] | None = None, database: Path | None = None) -> list[tuple]:
    """Run a read-only query on the database."""
    with duckdb.connect(str(database or db_path()), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()
