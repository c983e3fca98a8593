"""Every SQL example in docs/database.md runs as written against a database the product loaded."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from numa_ops import db as numa_db
from numa_ops import results

from tests.numa_ops.records import record

DATABASE_DOC = Path(__file__).resolve().parents[1] / "docs" / "database.md"
QUERIES = re.findall(r"```sql\n(.*?)```", DATABASE_DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    base = tmp_path_factory.mktemp("db")
    folder = base / "f1"
    for i, ok in enumerate((True, True, False)):
        results.write_json_atomic(folder / "runs" / f"f1.r{i}.json", record(f"f1.r{i}", success=ok, device="cuda"))
    numa_db.load_runs([folder], base / "db.duckdb")
    return base / "db.duckdb"


def test_the_database_page_has_at_least_five_queries():
    assert len(QUERIES) >= 5


@pytest.mark.parametrize("sql", QUERIES, ids=[q.splitlines()[0].lstrip("- ")[:40] for q in QUERIES])
def test_query_runs_as_written(database, sql):
    with duckdb.connect(str(database), read_only=True) as con:
        con.execute(sql).fetchall()
