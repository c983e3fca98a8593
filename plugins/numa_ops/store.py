"""The results database under its older name: everything lives in ``numa_ops.db`` (and ``numa_ops.regressions``)."""

from numa_ops.db import LOCK_TIMEOUT_S, StoreBusyError, db_path, lock_path, query, read_connection, run_folders
from numa_ops.db import load_runs as load

__all__ = ["LOCK_TIMEOUT_S", "StoreBusyError", "db_path", "load", "lock_path", "query", "read_connection", "run_folders"]
