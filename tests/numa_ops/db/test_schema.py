"""The schema: settings older records left out are filled at load (old rows too), or once in the base views."""

from __future__ import annotations

import json

import duckdb
import pytest
from numa_ops import db as numa_db
from numa_ops import results
from numa_ops.db import schema

from tests.numa_ops.records import record


@pytest.mark.parametrize(("given", "stored"), [(None, "eager"), ("compile", "compile")],
                         ids=["older-record", "compile"])
def test_execution_is_filled_at_load(folder, db, given, stored):
    rec = record("f1.a")
    if given:
        rec["metrics"]["execution"] = given
    results.write_json_atomic(folder / "runs" / "f1.a.json", rec)
    numa_db.load_runs([folder], db)
    assert numa_db.query("SELECT execution FROM runs", database=db) == [(stored,)]


def test_rows_stored_before_execution_was_filled_get_it(folder, db):
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, success BOOLEAN, execution VARCHAR)")
        con.execute("INSERT INTO runs VALUES ('old', true, NULL), ('old_compiled', true, 'compile')")
    numa_db.load_runs([folder], db)
    assert numa_db.query("SELECT run_id, execution FROM runs ORDER BY run_id", database=db) == [
        ("old", "eager"), ("old_compiled", "compile")]


def test_base_views_fill_host_memory_and_placement_mode_of_older_records(folder, db):
    results.write_json_atomic(folder / "runs" / "f1.a.json", record("f1.a"))
    results.write_json_atomic(folder / "runs" / "f1.b.json", record("f1.b", success=False))
    numa_db.load_runs([folder], db)
    assert numa_db.query("SELECT pinned_memory, placement_mode FROM runs", database=db) == [(None, None)] * 2
    assert numa_db.query("SELECT run_id, pinned_memory, placement_mode FROM filled_runs ORDER BY run_id",
                         database=db) == [("f1.a", True, "process"), ("f1.b", True, "process")]
    assert numa_db.query("SELECT run_id FROM measured_runs", database=db) == [("f1.a",)]
    assert numa_db.query("SELECT count(*) FROM gpu_runs", database=db) == [(0,)]


def _declared(model: type, path: str) -> bool:
    """Whether the dotted ``path`` names a field the record model declares, part by part."""
    import typing

    from pydantic import BaseModel

    node: object = model
    for part in path.split("."):
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return False
        fields = {f.alias or n: f for n, f in node.model_fields.items()}
        if part not in fields:
            return False
        args = [a for a in typing.get_args(fields[part].annotation) if a is not type(None)] or [fields[part].annotation]
        node = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), args[0])
    return True


def test_every_column_is_read_from_a_field_the_record_model_declares():
    from numa_ops.record import PairedMetrics, RunRecord

    paths = [path for _, _, path in schema.COLUMNS if path] + list(schema.EXTRA_PATHS)
    assert [p for p in paths if not _declared(RunRecord, p)] == []
    structure = json.loads(schema.PAIRED_STRUCTURE)
    paired = [k for k in structure if k not in ("arms", "comparisons")]
    paired += [f"arms.{k}" for k in structure["arms"][0]] + [f"comparisons.{k}" for k in structure["comparisons"][0]]
    paired += [f"comparisons.adjusted.{k}" for k in structure["comparisons"][0]["adjusted"]]
    assert [p for p in paired if not _declared(PairedMetrics, p)] == []


def test_an_undeclared_path_is_found():
    from numa_ops.record import RunRecord

    assert not _declared(RunRecord, "metrics.samples_per_second")
    assert not _declared(RunRecord, "metrics.samples_per_s.median")
    assert _declared(RunRecord, "metrics.issue_ms.batch.median")
