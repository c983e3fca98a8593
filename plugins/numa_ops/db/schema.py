"""The tables: ``runs`` (one row per run record), ``trials``, ``paired_comparisons`` and ``topology``; how a record
becomes a row.

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
    ("placement_mode", "VARCHAR", "placement_mode"),  # process | pool | paired; NULL (older records): process
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
    ("d2h_mode", "VARCHAR", None),  # outputs | tokens: the metrics' (what ran), else the test's (a failed run)
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
    ("warmup_batches", "INTEGER", "test.warmup_batches"),
    ("min_trial_s", "DOUBLE", "test.min_trial_s"),
    ("intra_op_threads", "INTEGER", "test.intra_op_threads"),
    ("telemetry", "VARCHAR", "test.telemetry"),
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
    "d2h_mode": "coalesce(j['metrics']['d2h_mode'], j['test']['d2h_mode'])",
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
    "metrics.d2h_mode": "VARCHAR",
    "test.d2h_mode": "VARCHAR",
    "metrics.paired": "JSON",  # parsed again into PAIRED_STRUCTURE, one row per comparison
}


# One row per comparison of a paired run (``metrics.paired.comparisons``): column, SQL type, expression over the
# paired block ``p`` (parsed into PAIRED_STRUCTURE), its comparison ``c`` and the comparison's index ``i``.
_ARM, _REF = "p.arms[c.arm + 1]", "p.arms[c.vs + 1]"
_ADJ = "CASE WHEN p.kind = 'memory' THEN c.adjusted.{} END"  # thread arms move the control: never adjusted
PAIRED_COLUMNS: list[tuple[str, str, str]] = [
    ("run_id", "VARCHAR", "run_id"),
    ("comparison", "INTEGER", "i"),
    ("kind", "VARCHAR", "p.kind"),  # memory | thread
    ("arm", "INTEGER", "c.arm"),
    ("arm_name", "VARCHAR", f"{_ARM}.name"),
    ("arm_node", "INTEGER", f"{_ARM}.node"),
    ("arm_pinned", "BOOLEAN", f"{_ARM}.pinned"),
    ("arm_placement", "VARCHAR", f"{_ARM}.placement"),
    ("arm_numa_distance", "INTEGER", f"{_ARM}.numa_distance"),
    ("arm_pool_node", "INTEGER", f"{_ARM}.pool_node"),
    ("arm_thread_node", "INTEGER", f"{_ARM}.thread_node"),
    ("arm_samples_per_s", "DOUBLE", f"{_ARM}.samples_per_s"),
    ("arm_trials", "INTEGER", f"len({_ARM}.trial_samples_per_s)"),
    ("reference", "INTEGER", "c.vs"),
    ("reference_name", "VARCHAR", f"{_REF}.name"),
    ("reference_node", "INTEGER", f"{_REF}.node"),
    ("reference_pinned", "BOOLEAN", f"{_REF}.pinned"),
    ("reference_placement", "VARCHAR", f"{_REF}.placement"),
    ("reference_samples_per_s", "DOUBLE", f"{_REF}.samples_per_s"),
    ("reference_trials", "INTEGER", f"len({_REF}.trial_samples_per_s)"),
    ("blocks", "INTEGER", "c.blocks"),
    ("estimate", "DOUBLE", "c.estimate"),  # mean ln(arm / reference) over the blocks
    ("ratio", "DOUBLE", "c.ratio"),  # arm samples/s / reference samples/s, and its 95% interval
    ("low", "DOUBLE", "c.low"),
    ("high", "DOUBLE", "c.high"),
    ("half_width", "DOUBLE", "c.half_width"),
    ("df", "INTEGER", "c.df"),
    ("mde", "DOUBLE", "c.mde"),
    ("verdict", "VARCHAR", "c.verdict"),
    ("adjusted_ratio", "DOUBLE", _ADJ.format("ratio")),
    ("adjusted_low", "DOUBLE", _ADJ.format("low")),
    ("adjusted_high", "DOUBLE", _ADJ.format("high")),
    ("adjusted_half_width", "DOUBLE", _ADJ.format("half_width")),
    ("adjusted_df", "INTEGER", _ADJ.format("df")),
    ("adjusted_mde", "DOUBLE", _ADJ.format("mde")),
    ("adjusted_slope", "DOUBLE", _ADJ.format("slope")),
    ("adjusted_verdict", "VARCHAR", _ADJ.format("verdict")),
    ("design", "VARCHAR", "p.design"),
    ("stop_reason", "VARCHAR", "p.stop_reason"),  # target | max_blocks | time_cap
    ("target", "DOUBLE", "p.target"),
    ("trials_s", "DOUBLE", "p.trials_s"),  # GPU seconds the run's paired trials took (all its comparisons)
]
PAIRED_NAMES = [name for name, _, _ in PAIRED_COLUMNS]
_ARM_FIELDS = {
    "name": "VARCHAR",
    "node": "INTEGER",
    "pinned": "BOOLEAN",
    "placement": "VARCHAR",
    "numa_distance": "INTEGER",
    "pool_node": "INTEGER",
    "thread_node": "INTEGER",
    "samples_per_s": "DOUBLE",
    "trial_samples_per_s": ["DOUBLE"],
}
_INTERVAL = {
    "ratio": "DOUBLE",
    "low": "DOUBLE",
    "high": "DOUBLE",
    "half_width": "DOUBLE",
    "df": "INTEGER",
    "mde": "DOUBLE",
    "verdict": "VARCHAR",
}
PAIRED_STRUCTURE = json.dumps({
    "kind": "VARCHAR", "reference": "INTEGER", "arms": [_ARM_FIELDS], "design": "VARCHAR", "stop_reason": "VARCHAR",
    "target": "DOUBLE", "trials_s": "DOUBLE",
    "comparisons": [{"arm": "INTEGER", "vs": "INTEGER", "blocks": "INTEGER", "estimate": "DOUBLE", **_INTERVAL,
                     "adjusted": {**_INTERVAL, "slope": "DOUBLE"}}],
})


def paired_rows(source: str) -> str:
    """The ``paired_comparisons`` rows of ``source``, a query of ``(run_id, paired)`` (``paired``: a record's
    ``metrics.paired`` as JSON); a record without comparisons gives none."""
    exprs = ", ".join(f"{expr} AS {name}" for name, _, expr in PAIRED_COLUMNS)
    return (
        f"WITH src AS (SELECT run_id, json_transform(paired, '{PAIRED_STRUCTURE}') AS p FROM ({source}) WHERE paired "
        f"IS NOT NULL), "
        "cmp AS (SELECT run_id, p, unnest(p.comparisons) AS c, unnest(range(len(p.comparisons))) AS i FROM src) "
        f"SELECT {exprs} FROM cmp"
    )


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
    have = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'"
        ).fetchall()
    }
    added = [name for name, _, _ in COLUMNS if name not in have]
    for name, sql, _ in COLUMNS:  # a database written by an older numa-lab gains the new columns
        if name in added:
            con.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql.replace(' PRIMARY KEY', '')}")
    if added and "record" in have:
        _fill_new_columns(con, added)
    _fill_old_rows(con)
    # No key either: the load replaces a run's rows with the run (delete, then insert).
    paired_cols = ", ".join(f"{name} {sql}" for name, sql, _ in PAIRED_COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS paired_comparisons ({paired_cols})")
    con.execute(f"INSERT INTO paired_comparisons ({', '.join(PAIRED_NAMES)}) {paired_rows(_UNLISTED_PAIRED)}")
    views.create_views(con)


# Successful paired runs stored without their comparisons (by a numa-lab from before ``paired_comparisons``).
_UNLISTED_PAIRED = ("SELECT run_id, json_extract(record, '$.metrics.paired') AS paired FROM runs WHERE success "
                    "AND placement_mode = 'paired' AND run_id NOT IN (SELECT run_id FROM paired_comparisons)")


def _fill_new_columns(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    """Columns a database gains are filled for its stored rows from their records, as a load would have."""
    names = [name for name in names if name != "record"]
    if not names:
        return
    exprs = _expressions()
    picked = ", ".join(f"{exprs[name]} AS {name}" for name in names)
    con.execute(
        f"UPDATE runs SET {', '.join(f'{n} = src.{n}' for n in names)} FROM ("
        f"  SELECT run_id AS rid, {picked} FROM ("
        f"    SELECT run_id, json_transform(record, '{record_structure()}') AS j, record AS raw FROM runs WHERE "
        f"record IS NOT NULL)"
        ") src WHERE runs.run_id = src.rid"
    )


def _fill_old_rows(con: duckdb.DuckDBPyConnection) -> None:
    """Rows stored before a setting was filled at load get the value their records meant."""
    missing = " OR ".join(f"{name} IS NULL" for name in FILLED)
    if con.execute(f"SELECT count(*) FROM runs WHERE {missing}").fetchone()[0]:
        con.execute(
            "UPDATE runs SET "
            + ", ".join(f"{name} = coalesce({name}, {value})" for name, value in FILLED.items())
            + f" WHERE {missing}"
        )


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


def _expressions() -> dict[str, str]:
    """Each column of ``runs`` as an SQL expression over the parsed record ``j`` (in ``NAMES``' order)."""
    return {name: COMPUTED[name] if path is None else "j" + "".join(f"['{part}']" for part in path.split("."))
            for name, _, path in COLUMNS}


def column_expressions() -> str:
    """One SQL expression per column of ``runs``, over the parsed record ``j`` (in ``NAMES``' order)."""
    return ", ".join(f"{expr} AS {name}" for name, expr in _expressions().items())
