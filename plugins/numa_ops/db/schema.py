"""The tables: ``runs`` (one row per run record), ``trials`` and ``topology``; how a record becomes a row.

A column is read from one dotted path of the record, or computed from the parsed record ``j``
(``COMPUTED``). The execution mode, which older records left out, is filled at load (``FILLED``), old rows
too, so queries say ``execution`` and need no fallback of their own; host memory and placement mode
keep NULL for older records in the table and are filled once, in the base views (``views.BASE_VIEWS``).
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from numa_ops.db import views

# column name, SQL type, where it sits in a record (a dotted path; None: one of COMPUTED below)
COLUMNS: list[tuple[str, str, str | None]] = [
    ("run_id", "VARCHAR PRIMARY KEY", "run_id"),
    ("folder", "VARCHAR", "folder"),
    ("experiment", "VARCHAR", "experiment"),
    ("study", "VARCHAR", "study"),
    ("sweep_point", "INTEGER", "sweep_point"),
    ("lane", "VARCHAR", "lane"),
    ("device", "VARCHAR", None),
    ("gpu_id", "INTEGER", "gpu_id"),
    ("cpu_node", "INTEGER", "cpu_node"),
    ("mem_node", "INTEGER", "mem_node"),
    ("placement", "VARCHAR", "placement"),
    ("placement_mode", "VARCHAR", "placement_mode"),  # process | pool; NULL (older records): process
    ("pool_node", "INTEGER", "pool_node"),
    ("repeat", "INTEGER", "repeat"),  # the worker process's repeat index of its configuration, 0-based
    ("model_name", "VARCHAR", "model.name"),
    ("patch_size", "INTEGER", "model.patch_size"),
    ("depth", "INTEGER", "model.depth"),
    ("heads", "INTEGER", "model.heads"),
    ("dim", "INTEGER", "model.dim"),
    ("mlp_dim", "INTEGER", "model.mlp_dim"),
    ("parameters", "BIGINT", "metrics.parameters"),
    ("num_samples", "INTEGER", "test.num_samples"),
    ("batch_size", "INTEGER", "test.batch_size"),
    ("channels", "INTEGER", None),
    ("height", "INTEGER", None),
    ("width", "INTEGER", None),
    ("memory_size_mb", "INTEGER", "test.memory_size_mb"),
    ("compile_model", "BOOLEAN", "test.compile_model"),
    ("success", "BOOLEAN", None),
    ("error", "VARCHAR", "error"),
    ("duration_s", "DOUBLE", "duration"),
    ("started_at", "TIMESTAMPTZ", "started_at"),
    ("finished_at", "TIMESTAMPTZ", "finished_at"),
    ("samples_per_s", "DOUBLE", "metrics.samples_per_s"),
    ("h2d_ms_median", "DOUBLE", "metrics.h2d_ms.median"),
    ("h2d_ms_p95", "DOUBLE", "metrics.h2d_ms.p95"),
    ("forward_ms_median", "DOUBLE", "metrics.forward_ms.median"),
    ("forward_ms_p95", "DOUBLE", "metrics.forward_ms.p95"),
    ("d2h_ms_median", "DOUBLE", "metrics.d2h_ms.median"),
    ("d2h_ms_p95", "DOUBLE", "metrics.d2h_ms.p95"),
    ("batch_ms_median", "DOUBLE", "metrics.batch_ms.median"),
    ("batch_ms_p95", "DOUBLE", "metrics.batch_ms.p95"),
    ("batch_ms_p99", "DOUBLE", "metrics.batch_ms.p99"),
    ("h2d_bytes_per_batch", "BIGINT", "metrics.h2d_bytes_per_batch"),
    ("d2h_bytes_per_batch", "BIGINT", "metrics.d2h_bytes_per_batch"),
    ("h2d_gbps", "DOUBLE", "metrics.h2d_gbps"),
    ("d2h_gbps", "DOUBLE", "metrics.d2h_gbps"),
    ("execution", "VARCHAR", None),  # eager | compile | ...; older records: eager
    ("d2h_mode", "VARCHAR", "metrics.d2h_mode"),
    ("pinned_memory", "BOOLEAN", "metrics.pool_pinned"),  # NULL (older records): pinned, see views.BASE_VIEWS
    ("trials", "INTEGER", "metrics.trials"),
    ("ci_target_met", "BOOLEAN", "metrics.ci_target_met"),
    ("samples_per_s_ci_low", "DOUBLE", "metrics.samples_per_s_ci.low"),
    ("samples_per_s_ci_high", "DOUBLE", "metrics.samples_per_s_ci.high"),
    ("samples_per_s_ci_level", "DOUBLE", "metrics.samples_per_s_ci.level"),
    ("cpu_control_rate", "DOUBLE", "metrics.cpu_control_rate"),
    ("binding_stage", "VARCHAR", "metrics.binding_stage"),
    ("pipelined_samples_per_s", "DOUBLE", "metrics.pipelined_samples_per_s"),
    ("ideal_samples_per_s", "DOUBLE", "metrics.ideal_samples_per_s"),
    ("fwd_gpu_ms", "DOUBLE", "metrics.fwd_gpu_ms"),
    ("launch_overhead_share", "DOUBLE", "metrics.launch_overhead_share"),
    ("fwd_issue_ms", "DOUBLE", "metrics.fwd_issue_ms"),
    ("issue_batch_ms", "DOUBLE", "metrics.issue_ms.batch.median"),
    ("pipelined_vs_ideal", "DOUBLE", "metrics.pipelined_vs_ideal"),
    ("regime", "VARCHAR", "metrics.regime"),
    ("flops_per_sample", "BIGINT", "metrics.flops_per_sample"),
    ("gpu_util_pct_mean", "DOUBLE", "metrics.telemetry.gpu_util_pct_mean"),
    ("pcie_rx_mbps_max", "DOUBLE", "metrics.telemetry.pcie_rx_mbps_max"),
    ("power_w_mean", "DOUBLE", "metrics.telemetry.power_w_mean"),
    ("numa_distance", "INTEGER", "numa_distance"),
    ("pool_fraction_on_node", "DOUBLE", "metrics.pool_pages.fraction_on_intended"),
    ("launch_cpu", "INTEGER", "metrics.launch_cpu"),
    ("launch_cpu_node", "INTEGER", "metrics.launch_cpu_node"),
    ("peak_gpu_mem_mb", "DOUBLE", "metrics.peak_gpu_mem_mb"),
    ("compile_s", "DOUBLE", "metrics.compile_s"),
    ("worker_startup_s", "DOUBLE", "worker_startup_s"),
    ("host", "VARCHAR", "environment.host"),
    ("gpu_name", "VARCHAR", "environment.gpu_name"),
    ("driver", "VARCHAR", "environment.driver"),
    ("torch_version", "VARCHAR", "environment.torch"),
    ("cuda_runtime", "VARCHAR", "environment.cuda_runtime"),
    ("binding", "VARCHAR", "environment.binding.numactl"),
    ("cpus_allowed", "VARCHAR", "environment.binding.cpus_allowed"),
    ("mems_allowed", "VARCHAR", "environment.binding.mems_allowed"),
    ("record", "JSON", None),
]
NAMES = [name for name, _, _ in COLUMNS]

# Columns not read from one path of the parsed record ``j`` (the file's text is ``raw``).
COMPUTED = {
    "device": "coalesce(j['device'], j['metrics']['device'])",
    "channels": "j['test']['tensor_shape'][1]",
    "height": "j['test']['tensor_shape'][2]",
    "width": "j['test']['tensor_shape'][3]",
    "success": "coalesce(j['success'], false)",
    "execution": "coalesce(j['metrics']['execution'], 'eager')",
    "record": "json(raw)",
}
# Parsed too, though not a column of their own (``trials`` is read from the last one).
EXTRA_PATHS = {
    "device": "VARCHAR",
    "success": "BOOLEAN",
    "metrics.device": "VARCHAR",
    "test.tensor_shape": "INTEGER[]",
    "metrics.trial_samples_per_s": "MAP(VARCHAR, DOUBLE[])",
    "metrics.execution": "VARCHAR",
}


# Settings an older record may lack, filled with what it meant then (in new rows by COMPUTED, in old rows here).
FILLED = {"execution": "'eager'"}


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables and views if they are missing; bring a database written by an older numa-lab up to date."""
    # No primary key: the load keeps (run_id, trial, mode) unique (a run's trials are replaced with it), and
    # an index over millions of trial rows took 3 of the 10 s that 100k runs may take to load.
    con.execute("CREATE TABLE IF NOT EXISTS trials (run_id VARCHAR, trial INTEGER, mode VARCHAR, samples_per_s DOUBLE)")
    if con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'trials' "
                   "AND constraint_type = 'PRIMARY KEY'").fetchone()[0]:  # a database written by an older numa-lab
        con.execute("CREATE OR REPLACE TABLE trials AS SELECT * FROM trials")
    con.execute(
        "CREATE TABLE IF NOT EXISTS topology (folder VARCHAR PRIMARY KEY, host VARCHAR, numa_nodes INTEGER, "
        "gpus INTEGER, notes VARCHAR, snapshot JSON)"
    )
    cols = ",\n  ".join(f"{name} {sql}" for name, sql, _ in COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS runs (\n  {cols}\n)")
    have = {row[0] for row in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()}
    for name, sql, _ in COLUMNS:  # a database written by an older numa-lab gains the new columns
        if name not in have:
            con.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql.replace(' PRIMARY KEY', '')}")
    _fill_old_rows(con)
    views.create_views(con)


def _fill_old_rows(con: duckdb.DuckDBPyConnection) -> None:
    """Rows stored before a setting was filled at load get the value their records meant."""
    missing = " OR ".join(f"{name} IS NULL" for name in FILLED)
    if con.execute(f"SELECT count(*) FROM runs WHERE {missing}").fetchone()[0]:
        con.execute("UPDATE runs SET " + ", ".join(f"{name} = coalesce({name}, {value})" for name, value in FILLED.items())
                    + f" WHERE {missing}")


def record_structure() -> str:
    """The ``json_transform`` structure that parses a record into every column's type in one pass."""
    tree: dict[str, Any] = {}
    leaves = [(path, sql.replace(" PRIMARY KEY", "")) for _, sql, path in COLUMNS if path] + list(EXTRA_PATHS.items())
    for path, sql in leaves:
        *parents, leaf = path.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = sql
    return json.dumps(tree)


def column_expressions() -> str:
    """One SQL expression per column of ``runs``, over the parsed record ``j`` (in ``NAMES``' order)."""
    exprs = []
    for name, _, path in COLUMNS:
        expr = COMPUTED[name] if path is None else "j" + "".join(f"['{part}']" for part in path.split("."))
        exprs.append(f"{expr} AS {name}")
    return ", ".join(exprs)
