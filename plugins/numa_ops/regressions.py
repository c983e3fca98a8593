"""The ``regressions`` table: each night's verdicts per configuration, and which night is the baseline.

``numa_ops.nightly`` compares a night with its baseline; this module stores what it found and finds the
last accepted night, under the database's file lock (``numa_ops.db``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Required, TypedDict

import duckdb
from pydantic import BaseModel, ConfigDict

from numa_ops.db import (
    LOCK_TIMEOUT_S,
    db_path,
    ensure_schema,
    publish_read_copy,
    read_connection,
    table_exists,
    write_lock,
)
from numa_ops.run_folder import FolderName

REGRESSION_COLUMNS = [
    "night", "baseline", "config_key", "config", "tonight_mean", "tonight_low", "tonight_high",
    "baseline_mean", "baseline_low", "baseline_high", "change", "verdict", "error",
    "ratio_low", "ratio_high", "mde", "processes", "baseline_processes", "basis",
]


class NightVerdictJson(TypedDict, total=False):
    """One configuration's nightly verdict: a row of the ``regressions`` table and an item of ``regressions.json``
    (:func:`numa_ops.nightly.compare` writes every key; a row stored by hand may leave any but ``night`` out)."""

    night: Required[str]
    baseline: str | None
    config_key: str
    config: str
    tonight_mean: float | None
    tonight_low: float | None
    tonight_high: float | None
    baseline_mean: float | None
    baseline_low: float | None
    baseline_high: float | None
    change: float | None
    verdict: str
    error: str | None
    ratio_low: float | None
    ratio_high: float | None
    mde: float | None
    processes: int | None
    baseline_processes: int | None
    basis: str | None


class NightVerdict(BaseModel):
    """One configuration's nightly verdict, as tonight's check found it (frozen); :class:`NightVerdictJson` is what
    ``regressions.json`` and the ``regressions`` table hold of it."""

    model_config = ConfigDict(frozen=True)

    night: str
    baseline: str | None = None
    config_key: str | None = None
    config: str | None = None
    tonight_mean: float | None = None
    tonight_low: float | None = None
    tonight_high: float | None = None
    baseline_mean: float | None = None
    baseline_low: float | None = None
    baseline_high: float | None = None
    change: float | None = None
    verdict: str | None = None
    error: str | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None
    mde: float | None = None
    processes: int | None = None
    baseline_processes: int | None = None
    basis: str | None = None

    @classmethod
    def from_json(cls, data: NightVerdictJson) -> NightVerdict:
        return cls.model_validate(data)

    def to_json(self) -> NightVerdictJson:
        return NightVerdictJson(**self.model_dump())  # type: ignore[typeddict-item]

    def line(self) -> str:
        """The verdict in the nightly task's log: ``verdict config: change [interval], MDE (basis)``."""
        interval = (f" [{self.ratio_low - 1:+.1%}, {self.ratio_high - 1:+.1%}]"
                    if self.ratio_low is not None and self.ratio_high is not None else "")
        interval += f", MDE {self.mde:.1%}" if interval and self.mde is not None else ""
        said = f"{self.change:+.1%}{interval}" if self.change is not None else ""
        return f"{self.verdict or '?':14} {self.config}: {said} ({self.basis or self.error})"


# columns added after the table's first form: (name, SQL type), added to an older table on first use
ADDED_COLUMNS = [("ratio_low", "DOUBLE"), ("ratio_high", "DOUBLE"), ("mde", "DOUBLE"), ("processes", "INTEGER"),
                 ("baseline_processes", "INTEGER"), ("basis", "VARCHAR")]


def save_verdicts(phase: str, verdicts: Sequence[NightVerdict | NightVerdictJson], accepted: bool,
                  database: Path | None = None,
                  lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
    """Store a night's verdicts (again for the same night: replaced, never duplicated, ``checked_at`` kept from
    the first check); none: nothing to store."""
    database = database or db_path()
    database.parent.mkdir(parents=True, exist_ok=True)
    with write_lock(database, lock_timeout_s, "the verdicts were not stored, store them again later"):
        with duckdb.connect(str(database)) as con:
            ensure_schema(con)  # the runs the baseline's night is timed by, if none were loaded yet
            ensure_regressions_table(con)
            if not verdicts:  # DuckDB's executemany refuses an empty list
                return
            _insert_verdicts(con, phase, [v if isinstance(v, NightVerdict) else NightVerdict.from_json(v)
                                          for v in verdicts], accepted)
        publish_read_copy(database)  # the UI's SQL page sees tonight's verdicts too


def _insert_verdicts(
    con: duckdb.DuckDBPyConnection, phase: str, verdicts: list[NightVerdict], accepted: bool
) -> None:
    """Replace the nights' rows with ``verdicts``, in one transaction."""
    con.execute("BEGIN TRANSACTION")
    first_checked = {}  # a night checked again keeps the time of its first check (see last_accepted_night)
    for night in {v.night for v in verdicts}:
        first_checked[night] = con.execute(
            "SELECT coalesce(min(checked_at), now()) FROM regressions WHERE night = ?", [night]).fetchone()[0]
        con.execute("DELETE FROM regressions WHERE night = ?", [night])
    columns = ["phase", "accepted", *REGRESSION_COLUMNS, "checked_at"]
    con.executemany(
        f"INSERT INTO regressions ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        [[phase, accepted, *[getattr(v, c) for c in REGRESSION_COLUMNS], first_checked[v.night]] for v in verdicts],
    )
    con.execute("COMMIT")


def night_time(night: str, started: float | None = None, checked: float | None = None) -> float | None:
    """When ``night`` was, in epoch seconds: the UTC time in its folder name (the night Airflow scheduled, also
    for a backfill run later), else its runs' first start, else the first time its verdicts were stored."""
    named = FolderName.parse(night)
    if named is not None:
        return named.when.timestamp()
    return started if started is not None else checked


def last_accepted_night(phase: str, before: str, database: Path | None = None,
                        lock_timeout_s: float = LOCK_TIMEOUT_S) -> str | None:
    """The latest accepted night of ``phase`` before the night ``before`` (None: no baseline yet).

    Nights are ordered by when they were (``night_time``), not by when their verdicts were stored: checking
    an older night again (an Airflow clear or backfill) neither makes it the baseline of later nights nor
    gives it a later night as its own baseline. A night ``before`` whose time is not known yet is the latest.
    """
    database = database or db_path()
    if not database.exists():
        return None
    with read_connection(database, lock_timeout_s) as con:
        if not table_exists(con, "regressions"):
            return None
        # every night stored under this phase, accepted or not (``before`` may be one), with its times
        rows = con.execute(
            "WITH nights AS (SELECT night, bool_and(accepted) AS accepted, epoch(min(checked_at)) AS checked "
            "FROM regressions WHERE phase = ? GROUP BY night), "
            "starts AS (SELECT folder, epoch(min(started_at)) AS started FROM runs "
            "WHERE folder IN (SELECT night FROM nights UNION SELECT ?) GROUP BY folder) "
            "SELECT n.night, n.accepted, s.started, n.checked FROM nights n LEFT JOIN starts s ON s.folder = n.night "
            "UNION ALL SELECT ?, false, (SELECT started FROM starts WHERE folder = ?), NULL "
            "WHERE ? NOT IN (SELECT night FROM nights)",
            [phase, before, before, before, before],
        ).fetchall()
    when = {night: night_time(night, started, checked) for night, _, started, checked in rows}
    limit = when.get(before)
    candidates = [(when[night], night) for night, ok, _, _ in rows
                  if ok and night != before and when[night] is not None and (limit is None or when[night] < limit)]
    return max(candidates)[1] if candidates else None


def ensure_regressions_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``regressions`` table if it is missing; add the columns an older one lacks.

    ``change`` is tonight / baseline - 1; ``ratio_low``/``ratio_high`` the interval of tonight / baseline that the
    verdict is judged by (over worker processes, or a paired run's blocks; ``basis`` says which), ``mde`` the
    slowdown it could have found; ``processes``/``baseline_processes`` how many processes each night had.
    """
    con.execute(
        "CREATE TABLE IF NOT EXISTS regressions (phase VARCHAR, accepted BOOLEAN, night VARCHAR, baseline VARCHAR, "
        "config_key VARCHAR, config VARCHAR, tonight_mean DOUBLE, tonight_low DOUBLE, tonight_high DOUBLE, "
        "baseline_mean DOUBLE, baseline_low DOUBLE, baseline_high DOUBLE, change DOUBLE, verdict VARCHAR, "
        "error VARCHAR, checked_at TIMESTAMPTZ, PRIMARY KEY (night, config_key))"
    )
    for name, sql_type in ADDED_COLUMNS:
        con.execute(f"ALTER TABLE regressions ADD COLUMN IF NOT EXISTS {name} {sql_type}")
