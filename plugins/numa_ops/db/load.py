"""Loading run records into ``runs``, ``trials`` and ``paired_comparisons``: idempotent, set-based, one writer at a
time.

A run is stored once (primary key ``run_id``). A successful row is never replaced; a failed row is
replaced when the run is measured again. A load holds the database's file lock from the first read to
the published read-only copy, so two loads never race: the second waits, then catches up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pandas as pd
from pydantic import ValidationError

from numa_ops import paths, results
from numa_ops.db import schema
from numa_ops.db.connection import LOCK_TIMEOUT_S, db_path, write_lock
from numa_ops.record import RunRecord


def load_runs(
    folders: list[Path], database: Path | None = None, lock_timeout_s: float = LOCK_TIMEOUT_S
) -> dict[str, int]:
    """Load the run records of ``folders`` into the database; safe to run again or at once.

    Returns how many runs were ``inserted``, ``rechecked_failed`` (a failed row replaced), ``unchanged``, and
    the ``total_rows``. Once written (and the write connection closed), still under the lock, the read-only
    copy that the UI's SQL page reads is published.
    """
    database = database or db_path()
    database.parent.mkdir(parents=True, exist_ok=True)
    with write_lock(
        database, lock_timeout_s, "nothing was written, run the load again later (it catches up on every run file)"
    ):
        with duckdb.connect(str(database)) as con:
            schema.ensure_schema(con)
            stored_ok = {row[0] for row in con.execute("SELECT run_id FROM runs WHERE success").fetchall()}
            files, skipped = _read_run_files(folders, stored_ok)
            files = _drop_non_records(con, files)
            con.execute("BEGIN TRANSACTION")
            counts = _upsert_runs(con, files)
            counts["unchanged"] += skipped
            _store_topologies(con, folders)
            con.execute("COMMIT")
            counts["total_rows"] = con.execute("SELECT count(*) FROM runs").fetchone()[0]
        publish_read_copy(database)
    return counts


def publish_read_copy(database: Path) -> None:
    """The read-only copy of the database that the UI's SQL page reads (:mod:`numa_ops.db.snapshot`)."""
    from numa_ops.db import snapshot

    snapshot.publish(database)


def run_folders(base: Path | None = None) -> list[Path]:
    """Every run folder under the outputs folder (those with a ``runs/`` subfolder)."""
    base = base or paths.outputs_dir()
    return sorted(p.parent for p in base.glob("*/runs") if p.is_dir())


def _read_run_files(folders: list[Path], stored_ok: set[str]) -> tuple[pd.DataFrame, int]:
    """The text of every run file not yet stored as successful (those are final), and how many were skipped.

    Files that cannot be read as text are quarantined; a file gone since the listing is left out.
    """
    paths_, texts = [], []
    skipped = 0
    for folder in folders:
        runs_dir = os.path.join(folder, "runs")  # plain strings: pathlib costs seconds over 100k files
        if not os.path.isdir(runs_dir):
            continue
        with os.scandir(runs_dir) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(".json"))
        for name in names:
            if name[:-5] in stored_ok:
                skipped += 1
                continue
            path = os.path.join(runs_dir, name)
            try:
                with open(path, "rb") as fh:
                    texts.append(fh.read().decode())
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                results.quarantine(Path(path), f"unreadable run file: {exc}")
                continue
            paths_.append(path)
    return pd.DataFrame({"path": paths_, "raw": texts}), skipped


def _drop_non_records(con: duckdb.DuckDBPyConnection, files: pd.DataFrame) -> pd.DataFrame:
    """Drop (and quarantine) files that are not run records: each is validated through the record model
    (``record.RunRecord``), and DuckDB checks that it can read them all at once.

    What either refuses goes through ``results.read_record``, so a file is quarantined for the
    same reasons and with the same words as everywhere else.
    """
    con.register("incoming_files", files)
    bad = [row[0] for row in con.execute(
        "SELECT path FROM incoming_files WHERE NOT CASE WHEN json_valid(raw) "
        "THEN list_bool_and(json_exists(raw, ['$.run_id', '$.success'])) ELSE false END"
    ).fetchall()]
    con.unregister("incoming_files")
    refused = set(bad)
    bad += [path for path, raw in zip(files["path"], files["raw"], strict=True)
            if path not in refused and not _is_record(raw)]
    if not bad:
        return files
    fixed: dict[str, str | None] = {}
    for path in bad:
        try:
            record = results.read_record(Path(path))
            text = None if record is None else json.dumps(record.to_json(), default=str, sort_keys=True)
            if text is not None and not con.execute("SELECT json_valid(?)", [text]).fetchall()[0][0]:
                raise ValueError("unreadable run file: JSON that DuckDB cannot read (e.g. a lone surrogate escape)")
        except ValueError as exc:
            results.quarantine(Path(path), str(exc))
            text = None
        fixed[path] = text
    files = files.assign(raw=[fixed.get(p, raw) for p, raw in zip(files["path"], files["raw"], strict=True)])
    return files[files["raw"].notna()].reset_index(drop=True)


def _is_record(text: str) -> bool:
    """Whether ``text`` is a run record, by the record model."""
    try:
        RunRecord.model_validate_json(text)
    except ValidationError:
        return False
    return True


def _upsert_runs(con: duckdb.DuckDBPyConnection, files: pd.DataFrame) -> dict[str, int]:
    """Parse the records in DuckDB and store the new ones and the failed ones measured again, set-based.

    Only the parsed fields are materialised; the files' text stays in the DataFrame until it is inserted.
    """
    con.register("incoming_files", files.assign(ord=range(len(files))))
    # A run_id met twice (in two folders) counts once: the last file read wins.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE incoming AS SELECT ord, j FROM ("
        f"  SELECT ord, json_transform(raw, '{schema.record_structure()}') AS j FROM incoming_files"
        f") QUALIFY row_number() OVER (PARTITION BY j['run_id'] ORDER BY ord DESC) = 1"
    )
    # A failed row is replaced only by a newer record: a success, or a failure with another end time.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE incoming_take AS "
        "SELECT i.ord, i.j, r.run_id IS NULL AS fresh FROM incoming i LEFT JOIN runs r ON r.run_id = i.j['run_id'] "
        "WHERE r.run_id IS NULL OR (NOT r.success AND (coalesce(i.j['success'], false) OR r.finished_at IS NULL "
        "OR i.j['finished_at'] IS NULL OR i.j['finished_at'] <> r.finished_at))"
    )
    ((seen,),) = con.execute("SELECT count(*) FROM incoming").fetchall()
    ((fresh, redo),) = con.execute(
        "SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh) FROM incoming_take").fetchall()
    if fresh or redo:
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in schema.NAMES if n != "run_id")
        con.execute(
            f"INSERT INTO runs ({', '.join(schema.NAMES)}) SELECT {schema.column_expressions()} FROM incoming_take "
            f"JOIN incoming_files USING (ord) "
            f"ON CONFLICT (run_id) DO UPDATE SET {updates} WHERE NOT runs.success"
        )
        # One row per trial and timing mode of each (re)loaded successful run.
        con.execute("DELETE FROM trials WHERE run_id IN (SELECT j['run_id'] FROM incoming_take)")
        con.execute(
            "INSERT INTO trials WITH modes AS ("
            "  SELECT j['run_id'] AS run_id, unnest(map_entries(j['metrics']['trial_samples_per_s'])) AS m"
            "  FROM incoming_take WHERE coalesce(j['success'], false)"
            ") SELECT run_id, CAST(unnest(range(len(m.value))) AS INTEGER), m.key, unnest(m.value) FROM modes"
        )
        # One row per comparison of each (re)loaded successful paired run, replaced with the run.
        con.execute("DELETE FROM paired_comparisons WHERE run_id IN (SELECT j['run_id'] FROM incoming_take)")
        con.execute(
            f"INSERT INTO paired_comparisons ({', '.join(schema.PAIRED_NAMES)}) "
            + schema.paired_rows(
                "SELECT j['run_id'] AS run_id, j['metrics']['paired'] AS paired FROM incoming_take WHERE "
                "coalesce(j['success'], false)"
            )
        )
    con.unregister("incoming_files")
    con.execute("DROP TABLE incoming_take")
    con.execute("DROP TABLE incoming")
    return {"inserted": fresh, "rechecked_failed": redo, "unchanged": seen - fresh - redo}


def _store_topologies(con: duckdb.DuckDBPyConnection, folders: list[Path]) -> None:
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
