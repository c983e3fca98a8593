"""The results database (DuckDB): connection and locks, schema, loading, views; every SQL string lives here.

``load_runs`` stores run records; ``read_connection`` and ``query`` read under the loads' lock; the views
(``numa_penalty``, ``process_noise``, ``paired_penalty``, ...) are in ``views``, the report's queries in
``report_queries``.
"""

from numa_ops.db.connection import (
    DB_NAME,
    LOCK_TIMEOUT_S,
    StoreBusyError,
    db_path,
    lock_path,
    query,
    read_connection,
    table_exists,
    write_lock,
)
from numa_ops.db.load import load_runs, publish_read_copy, run_folders
from numa_ops.db.schema import COLUMNS, NAMES, PAIRED_COLUMNS, ensure_schema
from numa_ops.db.views import ONE_PROCESS, PENALTY_KEY, SETTINGS, SWEEP, T_TABLE, T_TABLE_MAX_DF, VIEWS

__all__ = [
    "COLUMNS",
    "DB_NAME",
    "LOCK_TIMEOUT_S",
    "NAMES",
    "ONE_PROCESS",
    "PAIRED_COLUMNS",
    "PENALTY_KEY",
    "SETTINGS",
    "SWEEP",
    "T_TABLE",
    "T_TABLE_MAX_DF",
    "VIEWS",
    "StoreBusyError",
    "db_path",
    "ensure_schema",
    "load_runs",
    "lock_path",
    "publish_read_copy",
    "query",
    "read_connection",
    "run_folders",
    "table_exists",
    "write_lock",
]
