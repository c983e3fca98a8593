"""A run folder's name, made and read in one place: ``<name>_<UTC time>_<6 hex>`` (plus ``_<host>`` per GPU
host), where the 6 hex are the first of ``sha1("<name>|<token>")``. A DAG run's token is ``<dag_id>|<run_id>``,
so its folder is found again from the DAG run alone; a command line run's token is its start time.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from numa_ops import paths

_NAME = re.compile(r"^(?P<name>.+)_(?P<time>\d{8}T\d{6})_(?P<digest>[0-9a-f]{6})(?:_(?P<host>[A-Za-z0-9_.-]+))?$")
REFUSED = "refused.json"  # in a run folder whose latest request was refused after its plan was written


def _digest(name: str, token: str) -> str:
    return hashlib.sha1(f"{name}|{token}".encode()).hexdigest()[:6]


def dag_run_token(dag_id: str, run_id: str) -> str:
    """The token that ties a folder to DAG run ``dag_id``/``run_id``."""
    return f"{dag_id}|{run_id}"


def make(name: str, when: datetime | None = None, token: str = "") -> str:
    """A new folder's name: one per invocation, the same for its retries (same ``when`` and ``token``)."""
    when = when or datetime.now(UTC)
    digest = _digest(name, token or when.isoformat())
    return paths.safe_name(f"{name}_{when.strftime('%Y%m%dT%H%M%S')}_{digest}", "run folder")


def on_host(folder: str, host: str | None) -> str:
    """``<folder>_<host>`` on a GPU host of several; ``folder`` itself on one host."""
    return paths.safe_name(f"{folder}_{host}", "folder") if host else folder


@dataclass(frozen=True)
class FolderName:
    """A folder name read back: what it was made from."""

    name: str
    time: str
    digest: str
    host: str | None

    @classmethod
    def parse(cls, folder: str) -> FolderName | None:
        """The parts of ``folder``, or None if :func:`make` did not name it."""
        match = _NAME.match(folder)
        return None if match is None else cls(match["name"], match["time"], match["digest"], match["host"])

    @property
    def when(self) -> datetime:
        """The UTC time in the name (for a DAG run: the time it was scheduled for)."""
        return datetime.strptime(self.time, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)

    def made_for(self, token: str) -> bool:
        """Whether this folder was made with ``token`` (e.g. :func:`dag_run_token`)."""
        return _digest(self.name, token) == self.digest
