"""The process that runs one SQL page query: ``python -I sql_sandbox.py`` reads its request (JSON) on stdin and
answers in JSON lines on stdout, so that nothing a query builds lives in the API server.

Before DuckDB is imported the process caps its own data memory (``RLIMIT_DATA``): DuckDB's ``memory_limit``
bounds its buffer manager, not the strings of a result chunk (``repeat('x', 10000000)`` over 100 rows is a
1 GB chunk whatever the limit). It opens the database read-only, sandboxed (no file system, no extensions,
configuration locked, no temporary directory), with ``memory_limit`` and ``threads`` set; it refuses anything
but one SELECT, looking inside ``EXPLAIN``; it writes rows until the row limit or the byte cap, and says
which. Absolute server paths in values and messages are written as the names the request gives them.

Answer lines: ``{"columns": [...]}``, then one JSON array per row, then ``{"cut": <sentence or null>}``; or
``{"error": <sentence>, "kind": "refused" | "failed" | "memory"}`` at any point. Only the standard library
and duckdb are imported: the file runs isolated (``-I``), without numa_ops on the path.
"""

from __future__ import annotations

import json
import math
import re
import resource
import sys
from typing import Any

SANDBOX = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "temp_directory": "",
    "lock_configuration": True,
}
_GAP = r"(?:\s|/\*.*?\*/|--[^\n]*(?:\n|$))"  # white space or a comment
_EXPLAIN = re.compile(rf"^{_GAP}*explain{_GAP}+(?:analy[sz]e{_GAP}+)?(?:\([^()]*\){_GAP}*)?", re.IGNORECASE | re.DOTALL)


class Refused(ValueError):
    """A statement the SQL page does not run."""


def check_statement(con: Any, sql: str) -> None:
    """Refuse anything but one SELECT; an EXPLAIN only of one SELECT (its own prefix taken off and the rest
    parsed again, so ``EXPLAIN ANALYZE COPY ...`` is refused as a COPY)."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise Refused(f"the query does not parse: {exc}") from None
    if len(statements) != 1:
        raise Refused(f"one statement at a time, please (got {len(statements)})")
    kind = statements[0].type
    if kind == duckdb.StatementType.EXPLAIN:
        inner = _EXPLAIN.sub("", statements[0].query, count=1)
        if inner == statements[0].query:
            raise Refused("refused: EXPLAIN is run here only as EXPLAIN [ANALYZE] SELECT ...")
        try:
            check_statement(con, inner)
        except Refused as exc:
            raise Refused(f"{exc} (inside EXPLAIN)") from None
        return
    if kind != duckdb.StatementType.SELECT:
        raise Refused(f"refused: only SELECT queries run here (statement type: {kind.name}); "
                      "the results are read-only")


def scrub(text: str, names: list[list[str]]) -> str:
    """``text`` with each absolute path of ``names`` ([path, name], longest first) written as its name."""
    for path, name in names:
        text = text.replace(path, name)
    return text


def plain(value: Any, names: list[list[str]]) -> Any:
    """A cell as JSON: numbers, booleans and None as they are (NaN as None), anything else as its text."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value if math.isfinite(value) else str(value)
    return scrub(str(value), names)


def answer(request: dict[str, Any], out: Any) -> None:
    """Run the request's query and write the answer lines to ``out``."""
    import duckdb

    names = sorted(request.get("names", []), key=lambda pair: -len(pair[0]))

    def say(line: dict[str, Any] | list[Any]) -> int:
        text = json.dumps(line, ensure_ascii=False) + "\n"
        out.write(text)
        return len(text.encode())

    config = {**SANDBOX, "memory_limit": f"{request['memory_mb']}MB", "threads": request["threads"]}
    try:
        con = duckdb.connect(request["database"], read_only=True, config=config)
        check_statement(con, request["sql"])
        cursor = con.execute(request["sql"])
        columns = [d[0] for d in cursor.description or []]
        limit, max_bytes = request["limit"], request["max_bytes"]
        sent, rows, cut = say({"columns": [scrub(c, names) for c in columns]}), 0, None
        while cut is None:
            row = cursor.fetchone()
            if row is None:
                break
            if rows == limit:
                cut = f"more rows than the row limit of {limit}: only the first {limit} are here"
                break
            line = json.dumps([plain(v, names) for v in row], ensure_ascii=False) + "\n"
            if sent + len(line.encode()) > max_bytes:
                mb = max_bytes / 2**20
                if rows == 0:
                    raise Refused(f"refused: the first row alone is larger than the {mb:g} MB an answer may hold; "
                                  "select fewer or shorter columns (e.g. left(col, 200))")
                cut = (f"cut at the {mb:g} MB an answer may hold, after {rows} row(s): the rest was left out; "
                       "select fewer or shorter columns, or fewer rows")
                break
            out.write(line)
            sent += len(line.encode())
            rows += 1
        say({"cut": cut})
    except Refused as exc:
        say({"error": scrub(str(exc), names), "kind": "refused"})
    except (duckdb.OutOfMemoryException, MemoryError):
        say({"error": f"refused: the query needs more than the {request['process_mb']} MB of memory a query may "
                      "use here; narrow it (fewer rows, shorter strings)", "kind": "memory"})
    except duckdb.Error as exc:
        say({"error": scrub(f"{type(exc).__name__}: {exc}", names), "kind": "failed"})


def main() -> None:
    request = json.loads(sys.stdin.read())
    cap = request["process_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    answer(request, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
