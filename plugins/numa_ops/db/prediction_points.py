"""The points the predictor fits its laws on: one row per measured configuration of a machine.

A configuration is a model, an image, a batch, an execution mode, the host memory and the D2H mode, measured in
process placement on the GPU's own node (or on the CPU), alone (no multi-GPU pattern): each stage's value is the
geometric mean over its runs (worker processes). The throughput is the ideal pipelined rate where the run has one
(a GPU: the batch over the slowest of the gated stages and the CPU's issue time), else the headline (the CPU).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from numa_ops.db.connection import LOCK_TIMEOUT_S, read_connection, table_exists
from numa_ops.db.views import scoped


def _geo(column: str) -> str:
    return f"exp(avg(ln({column})) FILTER (WHERE {column} > 0))"


POINTS = f"""
SELECT coalesce(host, '') AS host, coalesce(gpu_name, device) AS machine, device, execution,
       CASE WHEN pinned_memory THEN 'pinned' ELSE 'pageable' END AS host_memory,
       coalesce(d2h_mode, 'outputs') AS d2h_mode, model_name, depth, dim, heads, mlp_dim, patch_size,
       coalesce(TRY_CAST(json_extract_string(record, '$.model.num_classes') AS INTEGER), 1000) AS num_classes,
       channels, height, width, batch_size,
       {_geo('h2d_ms_median')} AS h2d_ms, {_geo('d2h_ms_median')} AS d2h_ms,
       {_geo('coalesce(fwd_gpu_ms, forward_ms_median)')} AS forward_ms, {_geo('issue_batch_ms')} AS issue_ms,
       {_geo('coalesce(ideal_samples_per_s, samples_per_s)')} AS samples_per_s,
       mode(regime) AS regime, count(*) AS runs, min(run_id) AS example_run
FROM measured_runs
WHERE placement_mode = 'process' AND coalesce(placement, 'cpu') IN ('local', 'cpu')
  AND json_extract_string(record, '$.group_id') IS NULL AND json_extract_string(record, '$.fake_gpu') IS NULL
  AND depth IS NOT NULL AND batch_size IS NOT NULL AND height IS NOT NULL
GROUP BY ALL
ORDER BY host, machine, execution, host_memory, depth, dim, height, batch_size
"""


def points_frame(con: duckdb.DuckDBPyConnection, folder: str | None = None) -> pd.DataFrame:
    """The points over one folder's runs (``folder``) or all runs."""
    if not table_exists(con, "runs"):
        return pd.DataFrame()
    where, params = ("folder = ?", [folder]) if folder else ("true", [])
    return con.execute(scoped(POINTS, where), params).df()


def read_points(database: Path, lock_timeout_s: float = LOCK_TIMEOUT_S) -> pd.DataFrame:
    """Every point of the database, read under the loads' lock."""
    with read_connection(database, lock_timeout_s) as con:
        return points_frame(con)
