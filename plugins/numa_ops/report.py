"""Altair report: one offline HTML page (Vega inlined) plus a PNG per chart.

Data is aggregated in DuckDB before it reaches Altair, so a page never carries raw rows. Every
reader below takes the database's path (it opens ``store.read_connection``, which waits for a
running load) or an open connection; ``write_report`` reads everything through one connection and
renders once it has let go of the database.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import altair as alt
import duckdb
import numpy as np
import pandas as pd

from numa_ops import store

AGGREGATE_SQL = """
SELECT experiment, model_name, depth, dim, height AS image, batch_size, coalesce(execution, 'eager') AS execution,
       CASE WHEN coalesce(pinned_memory, true) THEN 'pinned' ELSE 'pageable' END AS host_memory,
       lane, device, placement,
       any_value(gpu_name) AS gpu_name,
       mode(regime) FILTER (WHERE success) AS regime,
       count(*) AS runs,
       count(*) FILTER (WHERE success) AS ok_runs,
       median(samples_per_s) FILTER (WHERE success) AS samples_per_s,
       median(h2d_ms_median) FILTER (WHERE success) AS h2d_ms,
       median(forward_ms_median) FILTER (WHERE success) AS forward_ms,
       median(d2h_ms_median) FILTER (WHERE success) AS d2h_ms,
       median(h2d_gbps) FILTER (WHERE success) AS h2d_gbps,
       median(pipelined_samples_per_s) FILTER (WHERE success) AS pipelined_samples_per_s,
       median(ideal_samples_per_s) FILTER (WHERE success) AS ideal_samples_per_s,
       median(fwd_gpu_ms) FILTER (WHERE success) AS fwd_gpu_ms,
       median(launch_overhead_share) FILTER (WHERE success) AS launch_overhead_share,
       median(flops_per_sample) FILTER (WHERE success) AS flops_per_sample
FROM runs
WHERE {where}
GROUP BY ALL
ORDER BY experiment, depth, dim, model_name, image, batch_size, execution, host_memory, lane
"""


Source = Path | duckdb.DuckDBPyConnection  # the database file, or a connection already open on it


@contextmanager
def _reading(source: Source) -> Iterator[duckdb.DuckDBPyConnection]:
    """The connection itself, or a read connection to the file under the store's lock."""
    if isinstance(source, duckdb.DuckDBPyConnection):
        yield source
    else:
        with store.read_connection(source) as con:
            yield con


def _scope(folder: str | None) -> tuple[str, list[Any]]:
    """SQL condition and parameters for one run folder, or for everything."""
    return ("folder = ?", [folder]) if folder else ("true", [])


def aggregate(database: Source, folder: str | None = None) -> pd.DataFrame:
    """Per experiment x model x lane medians (one folder, or everything)."""
    where, params = _scope(folder)
    with _reading(database) as con:
        return con.execute(AGGREGATE_SQL.format(where=where), params).df()


def failures(database: Source, folder: str | None = None) -> pd.DataFrame:
    """Failed runs with their reasons."""
    where, params = ("folder = ? AND NOT success", [folder]) if folder else ("NOT success", [])
    with _reading(database) as con:
        return con.execute(f"SELECT run_id, lane, model_name, error FROM runs WHERE {where} ORDER BY run_id", params).df()


def _label(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["series"] = df["lane"] + " " + df["execution"] + " " + df["image"].astype(str) + "px b" + df["batch_size"].astype(str)
    df["row"] = df["model_name"] + " | " + df["execution"] + " | " + df["image"].astype(str) + "px b" + df["batch_size"].astype(str)
    df.loc[df["host_memory"] == "pageable", "row"] += " | pageable"
    if df["lane"].nunique() > 1:
        df["row"] = df["row"] + " | " + df["lane"]
    return df


def throughput_chart(df: pd.DataFrame) -> alt.Chart:
    """Median samples/s per model, one bar per lane, execution mode and shape."""
    return (
        alt.Chart(df, title="Throughput per model (median samples/s)")
        .mark_bar()
        .encode(
            x=alt.X("model_name:N", title="model", sort=None),
            xOffset="series:N",
            y=alt.Y("samples_per_s:Q", title="samples/s (serial)"),
            color=alt.Color("series:N", title="lane, execution, shape"),
            tooltip=["experiment", "model_name", "lane", "execution", "device", "placement", "regime",
                     alt.Tooltip("pipelined_samples_per_s:Q", format=".1f"),
                     alt.Tooltip("samples_per_s:Q", format=".1f"), "ok_runs", "runs"],
        )
        .properties(width=520, height=260)
    )


def stage_chart(df: pd.DataFrame) -> alt.Chart:
    """Stacked median per-batch time: H2D copy, forward, D2H copy."""
    long = df.melt(
        id_vars=["row", "model_name", "lane", "device"],
        value_vars=["h2d_ms", "forward_ms", "d2h_ms"],
        var_name="stage",
        value_name="ms",
    ).dropna(subset=["ms"])
    long["stage"] = long["stage"].map({"h2d_ms": "1 H2D copy", "forward_ms": "2 forward", "d2h_ms": "3 D2H copy"})
    return (
        alt.Chart(long, title="Stage breakdown per batch (median ms)")
        .mark_bar()
        .encode(
            y=alt.Y("row:N", title=None, sort=None, axis=alt.Axis(labelLimit=480)),
            x=alt.X("ms:Q", title="ms per batch", stack="zero"),
            color=alt.Color("stage:N", sort="ascending"),
            order=alt.Order("stage:N"),
            tooltip=["model_name", "lane", "stage", alt.Tooltip("ms:Q", format=".3f")],
        )
        .properties(width=520)
    )


def regime_chart(df: pd.DataFrame) -> alt.Chart:
    """Where a batch's time goes: copies, the GPU's own compute, and launch overhead; labelled by regime."""
    gpu = df.dropna(subset=["fwd_gpu_ms"]).copy()
    gpu["copies (H2D + D2H)"] = gpu["h2d_ms"] + gpu["d2h_ms"]
    gpu["GPU compute (graph replay)"] = gpu["fwd_gpu_ms"]
    gpu["launch overhead"] = (gpu["forward_ms"] - gpu["fwd_gpu_ms"]).clip(lower=0)
    gpu["row"] = gpu["row"] + "  [" + gpu["regime"].fillna("?") + "]"
    long = gpu.melt(
        id_vars=["row", "regime"],
        value_vars=["copies (H2D + D2H)", "GPU compute (graph replay)", "launch overhead"],
        var_name="component",
        value_name="ms",
    )
    return (
        alt.Chart(long, title="Regimes: launch-bound, transfer-bound or compute-bound (ms per batch)")
        .mark_bar()
        .encode(
            y=alt.Y("row:N", title=None, sort=None, axis=alt.Axis(labelLimit=480)),
            x=alt.X("ms:Q", title="ms per batch", stack="zero"),
            color=alt.Color("component:N"),
            tooltip=["row", "component", "regime", alt.Tooltip("ms:Q", format=".3f")],
        )
        .properties(width=520)
    )


TRANSFER_SQL = """
SELECT model_name, height AS image, batch_size, CASE WHEN coalesce(pinned_memory, true) THEN 'pinned' ELSE 'pageable' END AS host_memory,
       median(h2d_gbps) AS h2d_gbps, median(d2h_bytes_per_batch / batch_size) AS d2h_bytes_per_sample,
       median(h2d_bytes_per_batch / batch_size) AS h2d_bytes_per_sample
FROM runs WHERE success AND device = 'cuda' AND {where} GROUP BY ALL ORDER BY model_name, image
"""


def transfer_charts(database: Source, folder: str | None = None) -> dict[str, alt.Chart]:
    """H2D GB/s and bytes per sample against image size (D2H should stay flat with ViTForProfiling)."""
    where, params = _scope(folder)
    with _reading(database) as con:
        df = con.execute(TRANSFER_SQL.format(where=where), params).df()
    if df["image"].nunique() < 2 if len(df) else True:
        return {}
    df["series"] = df["model_name"] + " b" + df["batch_size"].astype(str) + " " + df["host_memory"]
    base = alt.Chart(df).encode(x=alt.X("image:Q", title="image size (px)"), color=alt.Color("series:N", title="model, batch, host memory"))
    h2d = base.mark_line(point=True).encode(y=alt.Y("h2d_gbps:Q", title="H2D GB/s")).properties(
        title="H2D bandwidth vs image size", width=420, height=220)
    long = df.melt(id_vars=["image", "series"], value_vars=["h2d_bytes_per_sample", "d2h_bytes_per_sample"],
                   var_name="direction", value_name="bytes")
    byte = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("image:Q", title="image size (px)"), y=alt.Y("bytes:Q", title="bytes per sample", scale=alt.Scale(type="log")),
        color=alt.Color("series:N"), strokeDash=alt.StrokeDash("direction:N"),
    ).properties(title="Bytes per sample vs image size (D2H flat by design)", width=420, height=220)
    return {"h2d_vs_image": h2d, "bytes_vs_image": byte}


def compile_chart(database: Source, folder: str | None = None) -> alt.Chart | None:
    """torch.compile's forward speed-up per model and mode, from the ``compile_speedup`` view."""
    where, params = _scope(folder)
    with _reading(database) as con:
        df = con.execute(
            f"WITH runs AS (SELECT * FROM main.runs WHERE {where}) "
            f"SELECT model_name, execution, median(forward_speedup) AS speedup FROM ({store.VIEWS['compile_speedup']}) "
            "WHERE forward_speedup IS NOT NULL GROUP BY ALL", params).df()
    if not len(df):
        return None
    return alt.Chart(df, title="torch.compile forward speed-up over eager").mark_bar().encode(
        x=alt.X("model_name:N", title="model", sort=None), xOffset="execution:N",
        y=alt.Y("speedup:Q", title="speed-up (x)"), color="execution:N",
        tooltip=["model_name", "execution", alt.Tooltip("speedup:Q", format=".2f")],
    ).properties(width=420, height=220)


def regression_chart(database: Source) -> alt.Chart | None:
    """Nightly verdicts over time: tonight's change against the baseline, per configuration."""
    with _reading(database) as con:
        exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'regressions'").fetchone()[0]
        if not exists:
            return None
        # By configuration key: two configurations may share a readable label.
        df = con.execute("SELECT night, config_key, min(checked_at) AS checked_at, any_value(config) AS config, "
                         "any_value(change) AS change, any_value(verdict) AS verdict FROM regressions "
                         "GROUP BY night, config_key ORDER BY night, config_key").df()
    if not len(df):
        return None
    return alt.Chart(df, title="Nightly regression timeline").mark_point(filled=True, size=60).encode(
        x=alt.X("checked_at:T", title="night"), y=alt.Y("change:Q", title="change vs baseline", axis=alt.Axis(format="%")),
        color=alt.Color("verdict:N"), tooltip=["night", "config", "verdict", alt.Tooltip("change:Q", format=".1%")],
    ).properties(width=420, height=220)


def sensitivity_heatmap(database: Source, folder: str | None = None) -> alt.Chart | None:
    """Samples/s per configuration x placement, relative to the configuration's local placement.

    Read from the ``numa_penalty`` view (remote = 1 - its ``throughput_penalty``), as best_practices.md is,
    so the page and the guide show the same penalty for the same configuration.
    """
    with _reading(database) as con:
        pen = _view(con, "numa_penalty", "*", folder)
    pen = pen[pen["status"] == "measured"]
    if not len(pen):
        return None  # no remote placement paired with a local one: nothing to map (the notes say why)
    config = (pen["model_name"] + " | gpu" + pen["gpu_id"].astype(str) + " " + pen["height"].astype(str) + "px b"
              + pen["batch_size"].astype(str) + " " + pen["execution"])
    if pen["host"].nunique() > 1:
        config = config + " | " + pen["host"].fillna("?")

    def dist(col: str) -> pd.Series:
        return pen[col].map(lambda d: "?" if pd.isna(d) else str(int(d)))

    df = pd.concat([
        pd.DataFrame({"model_name": pen["model_name"], "config": config, "regime": pen["regime"],
                      "placement": "local (d=" + dist("local_numa_distance") + ")", "relative": 1.0,
                      "samples_per_s": pen["local_samples_per_s"]}),
        pd.DataFrame({"model_name": pen["model_name"], "config": config, "regime": pen["regime"],
                      "placement": "remote (d=" + dist("remote_numa_distance") + ")", "relative": 1 - pen["throughput_penalty"],
                      "samples_per_s": pen["remote_samples_per_s"]}),
    ], ignore_index=True)
    return alt.Chart(df, title="NUMA sensitivity: samples/s relative to local placement").mark_rect().encode(
        x=alt.X("placement:N", title="placement (SLIT distance)"),
        y=alt.Y("config:N", title="model | GPU, shape, execution", axis=alt.Axis(labelLimit=480)),
        color=alt.Color("relative:Q", scale=alt.Scale(scheme="redyellowgreen", domainMid=1.0)),
        tooltip=["model_name", "config", "placement", "regime", alt.Tooltip("relative:Q", format=".3f"),
                 alt.Tooltip("samples_per_s:Q", format=".0f")],
    ).properties(width=300)


def scaling_chart(database: Source, folder: str | None = None) -> alt.Chart | None:
    """Time per sample against parameters (log-log), one line per execution mode and shape."""
    where, params = _scope(folder)
    with _reading(database) as con:
        df = con.execute(
            "SELECT coalesce(study || ' ', '') || coalesce(execution, 'eager') || ' ' || height || 'px b' || batch_size "
            "AS series, model_name, median(parameters) AS parameters, 1000.0 / median(samples_per_s) AS ms_per_sample FROM runs "
            f"WHERE success AND parameters IS NOT NULL AND {where} GROUP BY ALL",
            params,
        ).df()
    if df["model_name"].nunique() < 3 if len(df) else True:
        return None
    return alt.Chart(df, title="Scaling: time per sample vs parameters (fits in the table below)").mark_line(point=True).encode(
        x=alt.X("parameters:Q", scale=alt.Scale(type="log")), y=alt.Y("ms_per_sample:Q", title="ms per sample", scale=alt.Scale(type="log")),
        color="series:N", tooltip=["model_name", "series", alt.Tooltip("ms_per_sample:Q", format=".4f")],
    ).properties(width=420, height=240)


CROSSOVER_MODELS_SQL = """
SELECT coalesce(execution, 'eager') || ' ' || height || 'px b' || batch_size
           || CASE WHEN coalesce(pinned_memory, true) THEN '' ELSE ' pageable' END AS series,
       model_name, median(flops_per_sample) AS flops_per_sample, median(fwd_gpu_ms) AS "GPU compute",
       median(h2d_ms_median + d2h_ms_median) AS "copies (H2D + D2H)"
FROM runs WHERE success AND device = 'cuda' AND fwd_gpu_ms IS NOT NULL AND flops_per_sample > 0 AND {where}
GROUP BY ALL
"""


def crossover_table(database: Source, folder: str | None = None) -> pd.DataFrame:
    """The ``crossover`` view (over one folder's runs, or all): where GPU compute overtakes the copies."""
    where, params = _scope(folder)
    with _reading(database) as con:
        return con.execute(
            f"WITH runs AS (SELECT * FROM main.runs WHERE {where}) SELECT * FROM ({store.VIEWS['crossover']}) "
            "WHERE models >= 2", params).df()


def crossover_chart(database: Source, folder: str | None = None, table: pd.DataFrame | None = None) -> alt.Chart | None:
    """GPU compute and copy time per batch against FLOPs per sample, with a rule where compute overtakes (RQ2)."""
    where, params = _scope(folder)
    with _reading(database) as con:
        df = con.execute(CROSSOVER_MODELS_SQL.format(where=where), params).df()
        if table is None:
            table = crossover_table(con, folder)
    if not len(df) or df.groupby("series")["model_name"].nunique().max() < 2:
        return None
    long = df.melt(id_vars=["series", "model_name", "flops_per_sample"], value_vars=["GPU compute", "copies (H2D + D2H)"],
                   var_name="component", value_name="ms").dropna(subset=["ms"])
    lines = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("flops_per_sample:Q", title="FLOPs per sample", scale=alt.Scale(type="log")),
        y=alt.Y("ms:Q", title="ms per batch", scale=alt.Scale(type="log")),
        color=alt.Color("series:N", title="execution, shape"), strokeDash=alt.StrokeDash("component:N"),
        tooltip=["series", "model_name", "component", alt.Tooltip("ms:Q", format=".3f")],
    )
    marks = table.assign(
        series=table["execution"] + " " + table["height"].astype(str) + "px b" + table["batch_size"].astype(str)
        + table["pinned_memory"].map(lambda p: "" if p is None or pd.isna(p) or p else " pageable"),
        at=table["crossover_flops_estimate"].fillna(table["crossover_flops_per_sample"]),
    ).dropna(subset=["at"])[["series", "at", "first_compute_dominated_model"]]
    chart = lines
    if len(marks):
        rules = alt.Chart(marks).mark_rule(strokeWidth=2).encode(
            x="at:Q", color=alt.Color("series:N"),
            tooltip=["series", alt.Tooltip("at:Q", title="crossover FLOPs/sample", format=".3g"),
                     alt.Tooltip("first_compute_dominated_model:N", title="first compute-dominated model")],
        )
        chart = alt.layer(lines, rules)
    return chart.properties(title="Crossover: GPU compute vs copies per batch (rule: where compute overtakes)",
                            width=420, height=240)


def _crossover_html(table: pd.DataFrame) -> str:
    if not len(table):
        return ""
    shown = pd.DataFrame({
        "image": table["height"], "batch": table["batch_size"], "execution": table["execution"],
        "first compute-dominated model": table["first_compute_dominated_model"].fillna("none measured"),
        "its parameters": table["crossover_parameters"].map(lambda v: "-" if pd.isna(v) else f"{v:.3g}"),
        "its FLOPs/sample": table["crossover_flops_per_sample"].map(lambda v: "-" if pd.isna(v) else f"{v:.3g}"),
        "crossover FLOPs/sample (interpolated)": table["crossover_flops_estimate"].map(lambda v: "-" if pd.isna(v) else f"{v:.3g}"),
        "last transfer-dominated model": table["last_transfer_dominated_model"].fillna("-"),
        "models": table["models"],
    })
    return ("<h2>Crossover (where the GPU's compute overtakes the H2D + D2H copies)</h2>"
            + shown.to_html(index=False, classes="data crossover"))


def _view(con: duckdb.DuckDBPyConnection, name: str, columns: str, folder: str | None) -> pd.DataFrame:
    """One of the store's views over one folder's runs (or all runs)."""
    where, params = _scope(folder)
    return con.execute(f"WITH runs AS (SELECT * FROM main.runs WHERE {where}) "
                       f"SELECT {columns} FROM ({store.VIEWS[name]})", params).df()


def write_guide(
    out_dir: Path,
    database: Source,
    topology: dict[str, Any] | None,
    folder: str | None = None,
    crossovers: pd.DataFrame | None = None,
    laws: pd.DataFrame | None = None,
) -> Path:
    """``best_practices.md``: the recommendations with their numbers, and what could not be measured here.

    Over one folder's runs (or all runs); ``crossovers`` and ``laws``, when the caller has them for that
    scope already, are used as they are.
    """
    with _reading(database) as con:
        views = _guide_views(con, folder)
        cross = crossover_table(con, folder) if crossovers is None else crossovers
        laws = scaling_laws(con, folder) if laws is None else laws
    return _write_guide(out_dir, topology, views, cross, laws)


def _guide_views(con: duckdb.DuckDBPyConnection, folder: str | None) -> dict[str, pd.DataFrame]:
    """The views ``best_practices.md`` reads, over one folder's runs (or all runs)."""
    return {
        "recs": _view(con, "recommendations", "*", folder),
        "pen": _view(con, "numa_penalty", "model_name, execution, regime, throughput_penalty, status", folder),
        "comp": _view(con, "compile_speedup", "model_name, execution, forward_speedup, break_even_samples", folder),
    }


def _write_guide(out_dir: Path, topology: dict[str, Any] | None, views: dict[str, pd.DataFrame],
                 cross: pd.DataFrame, laws: pd.DataFrame) -> Path:
    recs, pen, comp = views["recs"], views["pen"], views["comp"]
    lines = ["# Best practices from the measured runs", ""]
    if topology:
        lines += [f"Host `{topology.get('host')}`: {len(topology.get('nodes', []))} NUMA node(s), "
                  f"{len(topology.get('gpus', []))} GPU(s).", ""]
    lines += ["## Fastest settings per model and image size", ""]
    for r in recs.itertuples():
        lines.append(f"- **{r.model_name}** at {r.height}px: lane `{r.best_lane}` ({r.placement}), execution "
                     f"`{r.execution}`, batch {r.batch_size}: {r.samples_per_s:.0f} samples/s "
                     f"(median of {r.evidence_runs} run(s)).")
    lines += ["", "## NUMA placement", ""]
    measured = pen[pen["status"] == "measured"]
    if len(measured):
        for r in measured.sort_values("throughput_penalty", ascending=False).itertuples():
            lines.append(f"- {r.model_name} ({r.execution}, {r.regime}): remote placement costs {r.throughput_penalty:.1%} of samples/s.")
    else:
        lines.append("- Not measurable here: no remote placement was run (a host with one NUMA node has none). "
                     "The penalty, its confidence interval and the pairing advice need a multi-node host.")
    if len(cross):
        lines += ["", "## Compute vs copies (crossover)", ""]
        for r in cross.itertuples():
            where = f"{r.height}px, batch {r.batch_size}, `{r.execution}`"
            if pd.isna(r.crossover_flops_per_sample):
                lines.append(f"- {where}: no measured model's GPU compute outlasts its copies (largest: "
                             f"{r.last_transfer_dominated_model}); copy placement and pinned memory matter for all of them.")
                continue
            est = "" if pd.isna(r.crossover_flops_estimate) else f"; interpolated crossover {r.crossover_flops_estimate:.3g} FLOPs/sample"
            below = ("smaller models are transfer-dominated." if isinstance(r.last_transfer_dominated_model, str) else
                     f"that is the smallest of the {r.models} models measured, so the crossover lies below it: "
                     "measure smaller models (or larger images) to find it.")
            lines.append(f"- {where}: GPU compute outlasts the H2D + D2H copies from **{r.first_compute_dominated_model}** on "
                         f"({r.crossover_flops_per_sample:.3g} FLOPs/sample, {r.crossover_parameters:.3g} parameters{est}); "
                         + below)
    if len(laws):
        lines += ["", "## Scaling laws (time per sample vs parameters)", ""]
        for r in laws.itertuples():
            lines.append(f"- {r.experiment} {r.study} ({r.execution}, {r.image}px, batch {r.batch}, {r.models} models): "
                         f"{r.law}, R^2 {r.R2:.3f}: {r.regime}.")
    if len(comp):
        lines += ["", "## torch.compile", ""]
        for r in comp.itertuples():
            pays = pd.notna(r.break_even_samples) and r.break_even_samples
            after = f"pays off after {r.break_even_samples:.0f} samples" if pays else "never pays off in steady state"
            lines.append(f"- {r.model_name} `{r.execution}`: {r.forward_speedup:.2f}x forward speed-up; {after}.")
    path = out_dir / "best_practices.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def scaling_laws(database: Source, folder: str | None = None) -> pd.DataFrame:
    """Time per sample against parameters, fitted as a power law per experiment, study (a depth sweep and a
    dim sweep are fitted apart), execution and shape."""
    with _reading(database) as con:
        return _fit_laws(_law_points(con, folder))


def _law_points(con: duckdb.DuckDBPyConnection, folder: str | None) -> pd.DataFrame:
    where, params = _scope(folder)
    return con.execute(
        f"SELECT experiment, coalesce(study, '') AS study, coalesce(execution, 'eager') AS execution, device, height, "
        f"batch_size, model_name, median(parameters) AS parameters, median(samples_per_s) AS samples_per_s FROM runs "
        f"WHERE success AND {where} GROUP BY ALL",
        params,
    ).df()


def _fit_laws(df: pd.DataFrame) -> pd.DataFrame:
    from numa_ops.analysis import fit_power_law

    rows = []
    for key, group in df.groupby(["experiment", "study", "execution", "device", "height", "batch_size"]):
        fit = fit_power_law(list(group["parameters"]), list(1.0 / group["samples_per_s"]))
        if fit is None:
            continue
        rows.append({
            "experiment": key[0], "study": key[1], "execution": key[2], "device": key[3], "image": key[4], "batch": key[5],
            "models": fit.points, "exponent": round(fit.exponent, 4), "law": f"s/sample = {fit.prefactor:.3g} * params^{fit.exponent:.3f}",
            "R2": round(fit.r_squared, 4), "max |log10 residual|": round(fit.max_abs_residual, 3), "regime": fit.regime(),
        })
    return pd.DataFrame(rows)


RUNS_AS_UNIT = 5  # runs per placement from which the bootstrap resamples runs rather than trials
# What a penalty's CI covers (column ``ci_basis``): run-to-run variation, or only the trials of one run each.
BETWEEN_RUNS = "between runs"
WITHIN_ONE_RUN = "within one run: trials are not independent, run-to-run variation is left out (too narrow)"

PENALTY_KEY = ["host", "model_name", "depth", "dim", "gpu_id", "height", "width", "batch_size", "execution"]  # as numa_penalty's
PENALTY_SQL = """
WITH runs AS (SELECT * FROM main.runs WHERE {where}),
pen AS ({view}),
r AS (
    SELECT host, model_name, depth, dim, gpu_id, height, width, batch_size, coalesce(execution, 'eager') AS execution,
           placement, coalesce(regime, 'unknown') AS regime,
           CAST(json_extract(record, '$.metrics.trial_samples_per_s.serial') AS DOUBLE[]) AS trials
    FROM runs WHERE success AND device = 'cuda' AND placement IN ('local', 'remote')
),
g AS (
    SELECT host, model_name, depth, dim, gpu_id, height, width, batch_size, execution, placement,
           list(DISTINCT regime) AS regimes,
           flatten(list(trials) FILTER (WHERE len(trials) > 0)) AS trials,
           list(list_avg(trials)) FILTER (WHERE len(trials) > 0) AS run_means
    FROM r GROUP BY ALL
)
SELECT g.*, pen.throughput_penalty AS view_penalty
FROM g LEFT JOIN pen ON {join}
ORDER BY host, model_name, depth, dim, gpu_id, height, width, batch_size, execution, placement
"""


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray)


def numa_penalties(database: Source, folder: str | None = None) -> pd.DataFrame:
    """Remote vs local penalty with a 95% CI, per model, GPU, shape and execution mode.

    Trials of one run share its worker, memory and moment, so they are not independent draws: only runs
    are. With at least ``RUNS_AS_UNIT`` runs per placement the bootstrap resamples runs (their mean trial
    samples/s). With 2 to 4 it resamples the trials, and the interval is widened to hold the t interval over
    the run means (``analysis.between_run_ci``), which carries the run-to-run variation the trials miss. With
    one run at a placement only the trials can be resampled: ``ci_basis`` says the interval is within-run.
    ``penalty`` is the ``numa_penalty`` view's (median of the runs), as the heatmap and best_practices.md
    give it; ``penalty of means`` is the one the interval is drawn around.
    """
    with _reading(database) as con:
        trials = _penalty_trials(con, folder)
    return _penalty_table(trials)


def _penalty_trials(con: duckdb.DuckDBPyConnection, folder: str | None) -> pd.DataFrame:
    where, params = _scope(folder)
    join = " AND ".join(f"pen.{c} IS NOT DISTINCT FROM g.{c}" for c in PENALTY_KEY)
    return con.execute(PENALTY_SQL.format(where=where, view=store.VIEWS["numa_penalty"], join=join), params).df()


def _penalty_table(df: pd.DataFrame) -> pd.DataFrame:
    from numa_ops.analysis import between_run_ci, penalty_ci

    rows = []
    for _, group in df.groupby(PENALTY_KEY, dropna=False, sort=False):
        first = group.iloc[0]
        # per placement: (mean of each run's trials, all trials); a placement without trials has neither
        got = {r.placement: (list(r.run_means), list(r.trials)) for r in group.itertuples() if _is_list(r.run_means)}
        if "local" not in got or "remote" not in got:
            continue
        runs = min(len(got["local"][0]), len(got["remote"][0]))
        unit = "runs" if runs >= RUNS_AS_UNIT else "trials"
        values = [got[p][0 if unit == "runs" else 1] for p in ("local", "remote")]
        ci = penalty_ci(values[0], values[1])
        between = between_run_ci(got["local"][0], got["remote"][0]) if unit == "trials" else None
        if between is not None and ci["low"] is not None:  # the trials' interval, widened to the runs' spread
            ci["low"], ci["high"] = min(ci["low"], between[0]), max(ci["high"], between[1])
        view = first.get("view_penalty")  # numa_penalty's, as the heatmap and best_practices.md show it
        rows.append({"host": first["host"], "model": first["model_name"], "gpu": first["gpu_id"], "image": first["height"],
                     "batch": first["batch_size"], "execution": first["execution"],
                     "regime": ", ".join(sorted({g for r in group.itertuples() for g in r.regimes})),
                     "penalty": ci["penalty"] if view is None or pd.isna(view) else float(view),
                     "penalty of means": ci["penalty"], "95% CI low": ci["low"], "95% CI high": ci["high"],
                     "ci_basis": BETWEEN_RUNS if unit == "runs" or between is not None else WITHIN_ONE_RUN,
                     "resampled": f"{unit} ({len(values[0])} local, {len(values[1])} remote)"
                                  + (f", widened to the t interval of the run means ({len(got['local'][0])} local, "
                                     f"{len(got['remote'][0])} remote)" if between else "")})
    return pd.DataFrame(rows)


def _notes(df: pd.DataFrame, topology: dict[str, Any] | None, failed: pd.DataFrame) -> list[str]:
    notes = []
    if topology:
        nodes = topology.get("nodes", [])
        gpus = topology.get("gpus", [])
        notes.append(
            f"Host {topology.get('host')}: {len(nodes)} NUMA node(s), {len(gpus)} GPU(s) "
            f"({', '.join(sorted({g['name'] for g in gpus})) or 'none'})."
        )
        notes.extend(topology.get("notes", []))
    if (df["device"] == "cpu").any():
        notes.append("Runs on device cpu: there is no host-to-device copy, so H2D and D2H are not measured; "
                     "the stage breakdown shows the forward pass only.")
    if len(failed):
        notes.append(f"{len(failed)} run(s) failed; see the table below and results.json.")
    return notes


def _page(title: str, header: str, charts: dict[str, alt.Chart], footer: str) -> str:
    """The HTML page: Vega's bundle inlined once, then one SVG embed per chart (a chart that fails says why)."""
    import vl_convert

    head = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>.chart{margin:1em 0} .chart-error{color:#b00}</style>")
    if not charts:
        return f"{head}</head><body>{header}<p>No successful runs to chart.</p>{footer}</body></html>"
    bundle = vl_convert.javascript_bundle(vl_version="_".join(alt.SCHEMA_VERSION.split(".")[:2]))
    divs = "".join(f'<div class="chart" id="chart-{name}"></div>' for name in charts)
    specs = {name: chart.to_dict() for name, chart in charts.items()}
    # "</" inside a string of the specs must not end the script element.
    specs_js = json.dumps(specs).replace("</", "<\\/")
    script = f"""<script>
const specs = {specs_js};
Promise.allSettled(Object.entries(specs).map(([name, spec]) =>
  vegaEmbed('#chart-' + name, spec, {{renderer: 'svg', actions: false}}).catch((err) => {{
    const note = document.createElement('pre');
    note.className = 'chart-error';
    note.textContent = 'chart ' + name + ' failed: ' + err;
    document.getElementById('chart-' + name).replaceChildren(note);
    throw err;
  }})
)).then((outcomes) => {{
  document.body.dataset.chartsRendered = outcomes.filter((o) => o.status === 'fulfilled').length;
}});
</script>"""
    return (f"{head}<script>{bundle}</script></head><body>{header}<div class='charts' data-charts='{len(charts)}'>"
            f"{divs}</div>{script}{footer}</body></html>")


def write_report(
    out_dir: Path,
    title: str,
    database: Path | None = None,
    folder: str | None = None,
    topology: dict[str, Any] | None = None,
    lock_timeout_s: float = store.LOCK_TIMEOUT_S,
) -> Path:
    """Write ``index.html`` (self-contained) and one PNG per chart into ``out_dir``.

    The database is read through one connection under the store's lock (so a load running in another
    process is waited for, up to ``lock_timeout_s``: ``store.StoreBusyError`` past it), and let go before
    anything is rendered or written.
    """
    database = database or store.db_path()
    out_dir.mkdir(parents=True, exist_ok=True)
    with store.read_connection(database, lock_timeout_s) as con:
        df = aggregate(con, folder)
        failed = failures(con, folder)
        ok = _label(df[df["ok_runs"] > 0])
        charts = {"throughput": throughput_chart(ok), "stages": stage_chart(ok)} if len(ok) else {}
        if len(ok) and ok["fwd_gpu_ms"].notna().any():
            charts["regimes"] = regime_chart(ok)
        charts.update(transfer_charts(con, folder))
        crossovers = crossover_table(con, folder)
        charts_more = (("sensitivity", sensitivity_heatmap(con, folder)), ("scaling", scaling_chart(con, folder)),
                       ("crossover", crossover_chart(con, folder, crossovers)), ("compile", compile_chart(con, folder)),
                       ("nightly", regression_chart(con)))
        charts.update((name, chart) for name, chart in charts_more if chart is not None)
        penalty_trials = _penalty_trials(con, folder)
        law_points = _law_points(con, folder)
        guide_views = _guide_views(con, folder)
    penalties = _penalty_table(penalty_trials)
    laws = _fit_laws(law_points)
    for name, chart in charts.items():
        chart.save(str(out_dir / f"{name}.png"), scale_factor=1.5)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in _notes(df, topology, failed))
    fail_rows = "".join(
        f"<tr><td>{html.escape(str(r.run_id))}</td><td>{html.escape(str(r.error))}</td></tr>" for r in failed.itertuples()
    )
    table = df.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-", classes="data")
    header = f"""<style>body{{font-family:sans-serif;margin:1.5em}} table.data{{border-collapse:collapse;font-size:12px}}
table.data td,table.data th{{border:1px solid #ccc;padding:2px 6px}}</style>
<h1>{html.escape(title)}</h1><ul class="notes">{notes}</ul>"""
    footer = f"<h2>Medians per model and lane</h2>{table}"
    if len(penalties):
        footer += ("<h2>NUMA penalty (remote vs local samples/s, bootstrap 95% CI)</h2>"
                   "<p><code>penalty</code> is 1 - median remote / median local samples/s of the runs, the number the "
                   "heatmap and best_practices.md give; the CI is a bootstrap around <code>penalty of means</code> "
                   "(of the trials' means), which may differ from it slightly. "
                   "Trials of one run are not independent draws, runs are: <code>ci_basis</code> says whether an "
                   "interval holds the run-to-run variation (2 or more runs at each placement) or only the trials of "
                   "one run, which makes it too narrow; measure more runs for the first.</p>"
                   + penalties.to_html(index=False, float_format=lambda v: f"{v:.3f}", classes="data"))
    elif (df["device"] == "cuda").any():
        footer += ("<h2>NUMA penalty</h2><p>No remote placement was measured in these runs (on a host with one "
                   "NUMA node none exists), so no penalty is reported.</p>")
    if len(laws):
        footer += ("<h2>Scaling laws (time per sample vs parameters, least squares in log space)</h2>"
                   + laws.to_html(index=False, classes="data"))
    footer += _crossover_html(crossovers)
    if fail_rows:
        footer += f'<h2>Failed runs</h2><table class="data"><tr><th>run_id</th><th>error</th></tr>{fail_rows}</table>'
    doc = _page(title, header, charts, footer)
    _write_guide(out_dir, topology, guide_views, crossovers, laws)
    index = out_dir / "index.html"
    index.write_text(doc)
    (out_dir / "report.json").write_text(json.dumps({"title": title, "rows": len(df), "failed": len(failed), "charts": list(charts)}))
    return index
