"""The FastAPI app the plugin mounts in Airflow's API server (at ``/numa-lab``): every route needs an
Airflow login (``ui/auth``).

- ``/``: the run folders with their summaries and gate verdicts, and the all-runs report (the nav entry);
- ``/runs/{dag_id}/{run_id}``: a DAG run's report (the "NUMA report" tab and the tasks' extra link);
- ``/files/{path}``: a file under ``outputs/``, read-only (``ui/files``);
- ``/sql`` and ``/sql.csv``: a read-only query on the results (``ui/sql``), as a table or CSV.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from numa_ops import paths
from numa_ops.ui import files, pages, runs, sql
from numa_ops.ui.auth import airflow_user

Limit = Annotated[int, Query(ge=1, le=sql.MAX_ROWS, description="at most this many rows")]
Timeout = Annotated[float, Query(gt=0, le=sql.MAX_TIMEOUT_S, description="seconds before the query is stopped")]
CUT_MARKER = "# cut: "  # the CSV's last line when rows were left out
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _root(request: Request) -> str:
    """The app's own URL path, ending in '/' (where Airflow mounted it)."""
    return request.scope.get("root_path", "").rstrip("/") + "/"


def _resume_folder(dag_id: str, run_id: str) -> str | None:
    """The resume folder the DAG run's form named, from Airflow's database (None if none, or no database)."""
    try:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            conf = session.scalar(select(DagRun.conf).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    except Exception:  # noqa: BLE001 - outside the API server (tests, scripts): the digest alone finds the folder
        return None
    folder = (conf or {}).get("folder")
    return folder if isinstance(folder, str) and folder else None


def _refusal(dag_id: str, run_id: str) -> str | None:
    """The planner's refusal of the DAG run (``plan_runs``'s ``refused`` XCom), from Airflow's database."""
    try:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.scalars(XComModel.get_many(run_id=run_id, key="refused", dag_ids=dag_id)).all()
            found = [XComModel.deserialize_value(row) for row in rows]
    except Exception:  # noqa: BLE001 - outside the API server (tests, scripts): no refusal to show
        return None
    sentences = [str(value) for value in found if value]
    return "plan refused: " + " ".join(sentences) if sentences else None


def _query(q: str, limit: int, timeout_s: float, max_bytes: int) -> tuple[sql.QueryResult | None, str | None, int]:
    """A query's result, or its error, and the HTTP status to answer with (an empty query: nothing, 200)."""
    if not q.strip():
        return None, None, 200
    try:
        return sql.run_query(q, limit, timeout_s, max_bytes=max_bytes), None, 200
    except sql.QueryError as exc:
        return None, str(exc), 400
    except (sql.NotPublishedError, sql.BusyError) as exc:
        return None, str(exc), 503


def create_app() -> FastAPI:
    app = FastAPI(title="numa-lab", description="Each DAG run's report and the results in SQL",
                  dependencies=[Depends(airflow_user)], docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def folders_page(request: Request) -> HTMLResponse:
        outputs = paths.outputs_dir()
        has_all = (outputs / runs.ALL_RUNS_REPORT).is_file()
        return HTMLResponse(pages.folders_page(_root(request), runs.run_folders(outputs), has_all), headers=NO_STORE)

    @app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse)
    def run_report(request: Request, dag_id: str, run_id: str) -> Response:
        outputs = paths.outputs_dir()
        names = runs.folders_of_run(dag_id, run_id, outputs, _resume_folder(dag_id, run_id))
        folders = [runs.read_folder(outputs / name) for name in names]
        if len(folders) == 1 and folders[0].has_report and not folders[0].refused:
            return RedirectResponse(f"{_root(request)}files/{quote(folders[0].report)}", status_code=307)
        refusal = None if folders else _refusal(dag_id, run_id)
        return HTMLResponse(pages.run_page(_root(request), dag_id, run_id, folders, refusal),
                            status_code=200 if folders else 404, headers=NO_STORE)

    @app.get("/files/{relative:path}")
    def serve_file(relative: str) -> FileResponse:
        try:
            path = files.resolve(relative)
        except files.RefusedPath as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return FileResponse(path, media_type=files.media_type(path), headers=NO_STORE)

    @app.get("/sql", response_class=HTMLResponse)
    def sql_page(request: Request, q: str = "", limit: Limit = sql.DEFAULT_ROWS,
                 timeout_s: Timeout = sql.DEFAULT_TIMEOUT_S) -> HTMLResponse:
        result, error, status = _query(q, limit, timeout_s, sql.PAGE_BYTES)
        return HTMLResponse(pages.sql_page(_root(request), sql.presets(), q, limit, timeout_s, result, error),
                            status_code=status, headers=NO_STORE)

    @app.get("/sql.csv")
    def sql_csv(q: str, limit: Limit = sql.DEFAULT_ROWS, timeout_s: Timeout = sql.DEFAULT_TIMEOUT_S) -> Response:
        result, error, status = _query(q, limit, timeout_s, sql.CSV_BYTES)
        if result is None:
            raise HTTPException(status if error else 400, error or "empty query")
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        headers = {**NO_STORE, "Content-Disposition": 'attachment; filename="numa-lab-query.csv"'}
        if result.cut:  # the last line says that rows were left out, and why
            out.write(f"{CUT_MARKER}{result.cut}\r\n")
            headers["X-Numa-Lab-Cut"] = result.cut
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)

    return app


app = create_app()
