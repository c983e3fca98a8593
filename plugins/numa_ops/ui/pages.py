"""The HTML of the plugin's own pages (the run folders, a DAG run's folders, the SQL page): plain,
self-contained, every value escaped. Links are relative to the app's root, given as ``root``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from numa_ops.ui.runs import ALL_RUNS_REPORT, RunFolder
from numa_ops.ui.sql import Preset, QueryResult

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2rem 1.6rem;color:#1a202c;background:#fff}
h1{font-size:1.4rem;margin:0 0 .8rem} h2{font-size:1.1rem;margin:1.2rem 0 .5rem}
table{border-collapse:collapse;font-size:.88rem}
th,td{border:1px solid #cbd5e0;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#edf2f7} td.num{text-align:right;font-variant-numeric:tabular-nums}
a{color:#2b6cb0} .pass{color:#276749;font-weight:600} .fail{color:#c53030;font-weight:600} .muted{color:#718096}
nav a{margin-right:1rem} textarea{width:100%;max-width:70rem;font-family:ui-monospace,monospace;font-size:.88rem}
.refused{color:#c53030} .presets form{display:inline} .presets button{margin:.15rem .25rem .15rem 0;font-size:.8rem}
.error{background:#fff5f5;border:1px solid #feb2b2;padding:.6rem;white-space:pre-wrap;
  font-family:ui-monospace,monospace}
"""


def _page(title: str, root: str, body: str) -> str:
    nav = (f'<nav><a href="{root}">run folders</a><a href="{root}files/{ALL_RUNS_REPORT}">all-runs report</a>'
           f'<a href="{root}sql">SQL</a></nav>')
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{nav}<h1>{escape(title)}</h1>{body}</body></html>")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td class=muted>-</td>"
    if isinstance(value, bool):
        return f"<td>{value}</td>"
    if isinstance(value, int | float):
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return f"<td class=num>{escape(text)}</td>"
    return f"<td>{escape(str(value))}</td>"


def _file(root: str, relative: str) -> str:
    return f"{root}files/{quote(relative)}"


def _gate(folder: RunFolder) -> str:
    if folder.gate_passed is None:
        return "<td class=muted>not judged</td>"
    cls, word = ("pass", "passed") if folder.gate_passed else ("fail", "failed")
    return f'<td><span class={cls}>{word}</span> <span class=muted>{escape(folder.gate_summary or "")}</span></td>'


def _request(f: RunFolder) -> str:
    """What was asked for: the overrides (and sweeps) and the sample count(s)."""
    overrides = "<br>".join(f"<code>{escape(o)}</code>" for o in f.overrides) or "<span class=muted>none</span>"
    samples = ", ".join(f"{n:,}" for n in f.num_samples) or "-"
    return f"<td>{overrides}</td><td class=num>{escape(samples)}</td>"


def _status(f: RunFolder) -> str:
    if f.refused:
        return f'<td><span class=fail>refused</span> <span class=refused>{escape(f.refused)}</span></td>'
    return _gate(f)


def _links(root: str, f: RunFolder) -> str:
    names = {"experiment_summary.json": "summary", "plan.json": "plan", "estimate.json": "estimate"}
    return "<td>" + " ".join(f'<a href="{_file(root, f"{f.name}/{n}")}">{names[n]}</a>' for n in f.files) + "</td>"


def folders_page(root: str, folders: Sequence[RunFolder], all_runs_report: bool) -> str:
    """The nav entry's page: the all-runs report and every run folder with what was asked (DAG run, phase,
    overrides, samples), its counts, its gate verdict or refusal, and links to the files it has."""
    report = (
        f'<p><a href="{_file(root, ALL_RUNS_REPORT)}">All-runs report</a> (every run in the database)</p>'
        if all_runs_report
        else "<p class=muted>No all-runs report yet: it is written by a phase's report task.</p>"
    )
    rows = "".join(
        "<tr>"
        + (
            f'<td><a href="{_file(root, f.report)}">{escape(f.name)}</a></td>'
            if f.has_report
            else f"<td>{escape(f.name)}</td>"
        )
        + _cell(f.phase)
        + _cell(f.dag_run)
        + _cell(f.created_at)
        + _request(f)
        + _cell(f.planned_runs)
        + _cell(f.successful_runs)
        + _cell(f.failed_runs)
        + _status(f)
        + _links(root, f)
        + "</tr>"
        for f in folders
    )
    table = (
        (
            "<table id=folders><thead><tr><th>run folder (report)</th><th>phase</th><th>DAG run</th><th>planned at</th>"
            "<th>overrides</th><th>num_samples</th><th>planned</th><th>succeeded</th><th>failed</th><th>gate</th>"
            f"<th>files</th></tr></thead><tbody>{rows}</tbody></table>"
        )
        if folders
        else "<p class=muted>No run folders yet.</p>"
    )
    return _page("numa-lab: run folders", root, report + f"<h2>Run folders ({len(folders)})</h2>" + table)


def _folder_item(root: str, f: RunFolder) -> str:
    """One folder of a DAG run: its report (or why there is none), and what was asked."""
    samples = ", ".join(f"{n:,}" for n in f.num_samples) or "-"
    asked = (f"<span class=muted>phase {escape(f.phase or '-')}, DAG run {escape(f.dag_run or '-')}, num_samples "
             f"{escape(samples)}, overrides: {escape(' '.join(f.overrides) or 'none')}</span>")
    if f.refused:
        head = f'{escape(f.name)}: <span class=fail>refused</span><div class="error refused">{escape(f.refused)}</div>'
    elif f.has_report:
        head = f'<a href="{_file(root, f.report)}">{escape(f.name)}</a>'
    else:
        head = f"{escape(f.name)} <span class=muted>(no report yet: the run's report task writes it)</span>"
    return f"<li>{head}<br>{asked}</li>"


def run_page(root: str, dag_id: str, run_id: str, folders: Sequence[RunFolder], refusal: str | None = None) -> str:
    """A DAG run with no single report to open: its folders (with a refusal's sentence), or why there is none."""
    if not folders and refusal:
        body = (f"<p><b>{escape(dag_id)}</b> run <b>{escape(run_id)}</b> was refused at planning, before any run "
                f'folder was written:</p><div class="error refused" id=refused>{escape(refusal)}</div>'
                f'<p><a href="{root}">All run folders</a>.</p>')
    elif not folders:
        body = (f"<p>No numa-lab run folder for <b>{escape(dag_id)}</b> run <b>{escape(run_id)}</b> yet: its "
                "<code>plan_runs</code> task writes it (a run refused at planning, or a DAG that is not a numa-lab "
                f'phase, has none). <a href="{root}">All run folders</a>.</p>')
    else:
        items = "".join(_folder_item(root, f) for f in folders)
        body = f"<p>{escape(dag_id)} run {escape(run_id)} wrote:</p><ul>{items}</ul>"
    return _page(f"numa-lab report: {dag_id}", root, body)


def sql_page(root: str, presets: Iterable[Preset], sql: str, limit: int, timeout_s: float,
             result: QueryResult | None, error: str | None) -> str:
    """The SQL page: presets, the query form, and the result table (or the error)."""
    limits = (f'<input type=hidden name=limit value="{limit}">'
              f'<input type=hidden name=timeout_s value="{timeout_s:g}">')
    buttons = "".join(  # one small form each: a preset runs at once, with the limits set below
        f'<form method=get action="{root}sql"><input type=hidden name=q value="{escape(p.sql)}">{limits}'
        f'<button type=submit title="{escape(p.sql)}">{escape(p.title)}</button></form>'
        for p in presets)
    form = (
        f"<div class=presets><b>Examples "
        f"(docs/database.md):</b><br>{buttons or '<span class=muted>none shipped</span>'}</div>"
        f'<form method=get action="{root}sql" id=query>'
        f'<p><textarea name=q rows=7 placeholder="SELECT ... FROM runs">{escape(sql)}</textarea></p>'
        f'<label>row limit <input type=number name=limit min=1 max=10000 value="{limit}"></label> '
        f'<label>time limit (s) <input type=number name=timeout_s min=0.1 max=60 step=0.1 '
        f'value="{timeout_s:g}"></label> '
        "<button type=submit id=run>Run</button></form>"
    )
    out = ""
    if error:
        out = f"<h2>Refused or failed</h2><div class=error id=error>{escape(error)}</div>"
    elif result is not None:
        head = "".join(f"<th>{escape(c)}</th>" for c in result.columns)
        body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in result.rows)
        more = f" (first {len(result.rows)}; more rows were left out)" if result.truncated else ""
        cut = f"<p class=error id=cut>{escape(result.cut)}</p>" if result.cut else ""
        csv = f'{root}sql.csv?q={quote(sql)}&limit={limit}&timeout_s={timeout_s:g}'
        out = (f"<h2>{len(result.rows)} row(s){more} in {result.seconds:.2f} s</h2>"
               f'{cut}<p><a href="{csv}" id=csv download>Download CSV</a></p>'
               f"<table id=result><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    note = ("<p class=muted>Read-only: one SELECT at a time on the latest published copy of "
            "<code>numa_lab.duckdb</code> (updated after every load); no files, extensions or ATTACH.</p>")
    return _page("numa-lab: SQL on the results", root, note + form + out)
