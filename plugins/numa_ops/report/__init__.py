"""The report of a run folder (or of all runs): read -> compute -> render.

``read`` reads the database once into a ``ReportData`` and lets go of it; ``numa_ops.analysis`` computes the
intervals, penalties and fits; ``charts`` draws (pure DataFrame -> Chart), ``page`` writes the offline
``index.html`` (Vega inlined: GPU hosts are often air-gapped) and ``guide`` writes ``best_practices.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import altair as alt
import pandas as pd

from numa_ops import analysis, db, predict
from numa_ops.report import charts, guide, page
from numa_ops.report.format import varying
from numa_ops.report.read import ReportData, read_report_data
from numa_ops.run_request import RunRequest
from numa_ops.topology import TopologyJson

__all__ = ["ReportData", "draw_charts", "numa_penalties", "read_report_data", "write_report"]


def numa_penalties(data: ReportData) -> pd.DataFrame:
    """Remote vs local penalty per configuration, host memory and placement mode, from the ``numa_penalty`` view:
    the between-process interval and MDE, and the CPU-adjusted penalty where every process recorded the control.
    The test settings that differ between the rows (D2H mode, pool size, sweep point, ...) are named beside them."""
    table = analysis.penalty_table(data.penalty, data.penalty_runs, db.PENALTY_KEY, db.ONE_PROCESS)
    pen = data.penalty
    if not len(table):
        return table
    shown = pen[pen["local_processes"].gt(0) & pen["remote_processes"].gt(0)].reset_index(drop=True)
    at = list(table.columns).index("placement mode") + 1
    for col, words in reversed(varying(shown).items()):
        if col not in ("host", "gpu_id"):  # the table has them already
            table.insert(at, words, shown[col].to_numpy())
    return table


def draw_charts(data: ReportData, lanes: pd.DataFrame) -> dict[str, alt.Chart]:
    """Every chart the data can fill, by name (a chart with nothing to show is left out)."""
    ok = charts.label_lanes(lanes[lanes["ok_runs"] > 0]) if len(lanes) else lanes
    drawn: dict[str, alt.Chart | None] = {}
    if len(ok):
        drawn |= {"throughput": charts.throughput_chart(ok), "stages": charts.stage_chart(ok)}
        if ok["fwd_gpu_ms"].notna().any():
            drawn["regimes"] = charts.regime_chart(ok)
    drawn |= charts.transfer_charts(data.transfer)
    drawn |= {"sensitivity": charts.sensitivity_heatmap(data.penalty), "scaling": charts.scaling_chart(data.scaling),
              "crossover": charts.crossover_chart(data.crossover_models, data.crossover),
              "compile": charts.compile_chart(data.compile), "nightly": charts.regression_chart(data.regressions),
              "paired": charts.paired_chart(data.paired)}
    return {name: chart for name, chart in drawn.items() if chart is not None}


def prediction_check(points: pd.DataFrame) -> pd.DataFrame:
    """The laws against held-out configurations, per machine and regime (``predict.holdout``); empty without points
    or where a configuration cannot be read as one."""
    try:
        return predict.summary(predict.every_machine(points))
    except ValueError:
        return pd.DataFrame()


def _run_folder_of(out_dir: Path, folder: str | None) -> Path | None:
    """The run folder a folder's report is written into (``<run folder>/report``), where gate.json lives."""
    return out_dir.parent if folder and out_dir.name == "report" and out_dir.parent.name == folder else None


def write_report(
    out_dir: Path,
    title: str,
    database: Path | None = None,
    folder: str | None = None,
    topology: TopologyJson | None = None,
    lock_timeout_s: float = db.LOCK_TIMEOUT_S,
    run_folder: Path | None = None,
) -> Path:
    """Write ``index.html`` (self-contained), one PNG per chart and ``best_practices.md`` into ``out_dir``.

    The database is read once under its lock (a load running in another process is waited for, up to
    ``lock_timeout_s``: ``db.StoreBusyError`` past it) and let go before anything is computed or written.
    """
    run_folder = run_folder or _run_folder_of(out_dir, folder)
    data = read_report_data(database or db.db_path(), folder, run_folder, lock_timeout_s)
    asked = RunRequest.of_folder(run_folder).sentence() if run_folder is not None else None
    lanes = analysis.lane_intervals(data.lanes)
    penalties = numa_penalties(data)
    laws = analysis.scaling_laws(data.law_points)
    drawn = page.chart_specs(draw_charts(data, lanes))
    out_dir.mkdir(parents=True, exist_ok=True)
    page.write_pngs(drawn, out_dir)
    index = out_dir / "index.html"
    index.write_text(page.page_html(title, page.header_html(title, data, topology, folder is not None, asked), drawn,
                                     page.footer_html(data, lanes, penalties, laws,
                                                      prediction_check(data.prediction_points))))
    guide.write_guide(out_dir, data, laws, topology)
    (out_dir / "report.json").write_text(json.dumps({"title": title, "rows": len(lanes), "failed": len(data.failures),
                                                     "charts": list(drawn)}))
    return index
