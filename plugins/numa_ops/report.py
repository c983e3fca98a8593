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
import pandas as pd

from numa_ops import store

AGGREGATE_SQL = """
SELECT experiment, model_name, depth, dim, height AS image, batch_size, coalesce(execution, 'eager') AS execution,
       CASE WHEN coalesce(pinned_memory, true) THEN 'pinned' ELSE 'pageable' END AS host_memory,
       lane, device, placement, coalesce(placement_mode, 'process') AS placement_mode,
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
ORDER BY experiment, depth, dim, model_name, image, batch_size, execution, host_memory, lane, placement_mode
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
    if _both(df["host_memory"]):  # pinned and pageable each have their own bar, and say which they are
        df["series"] = df["series"] + " " + df["host_memory"]
    if _both(df["placement_mode"]):
        df["series"] = df["series"] + " " + df["placement_mode"]
        df["row"] = df["row"] + " | " + df["placement_mode"] + " placement"
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
    Each remote cell says its penalty where it is at least its MDE; otherwise "not detectable (MDE x%)" (no
    colour), or that one process a side gives no interval. Where both pinned and pageable host memory (or
    both placement modes) were measured, each row names which one it is.
    """
    with _reading(database) as con:
        pen = _view(con, "numa_penalty", "*", folder)
    pen = pen[pen["throughput_penalty"].notna()]
    if not len(pen):
        return None  # no remote placement paired with a local one: nothing to map (the notes say why)
    config = (pen["model_name"] + " | gpu" + pen["gpu_id"].astype(str) + " " + pen["height"].astype(str) + "px b"
              + pen["batch_size"].astype(str) + " " + pen["execution"])
    if _both(pen["pinned_memory"]):
        config = config + " " + pen["pinned_memory"].map(_memory)
    if _both(pen["placement_mode"]):
        config = config + " " + pen["placement_mode"] + " placement"
    if pen["host"].nunique() > 1:
        config = config + " | " + pen["host"].fillna("?")

    def dist(col: str) -> pd.Series:
        return pen[col].map(lambda d: "?" if pd.isna(d) else str(int(d)))

    measured = pen["status"] == "measured"
    remote_text = [f"{-p:+.1%}" if ok else ("not detectable (MDE " + f"{m:.1%})" if pd.notna(m) else "1 process a side")
                   for p, m, ok in zip(pen["throughput_penalty"], pen["mde"], measured, strict=True)]
    df = pd.concat([
        pd.DataFrame({"model_name": pen["model_name"], "config": config, "regime": pen["regime"],
                      "placement": "local (d=" + dist("local_numa_distance") + ")", "relative": 1.0,
                      "samples_per_s": pen["local_samples_per_s"], "label": "reference", "verdict": pen["status"],
                      "processes": pen["local_processes"]}),
        pd.DataFrame({"model_name": pen["model_name"], "config": config, "regime": pen["regime"],
                      "placement": "remote (d=" + dist("remote_numa_distance") + ")",
                      "relative": (1 - pen["throughput_penalty"]).where(measured),
                      "samples_per_s": pen["remote_samples_per_s"], "label": remote_text, "verdict": pen["status"],
                      "processes": pen["remote_processes"]}),
    ], ignore_index=True)
    base = alt.Chart().encode(
        x=alt.X("placement:N", title="placement (SLIT distance)"),
        y=alt.Y("config:N", title="model | GPU, shape, execution", axis=alt.Axis(labelLimit=480)),
        tooltip=["model_name", "config", "placement", "regime", "verdict", "processes",
                 alt.Tooltip("relative:Q", format=".3f"), alt.Tooltip("samples_per_s:Q", format=".0f")],
    )
    rect = base.mark_rect().encode(color=alt.Color("relative:Q", scale=alt.Scale(scheme="redyellowgreen", domainMid=1.0)))
    text = base.mark_text(fontSize=10).encode(text="label:N")
    return alt.layer(rect, text, data=df, title="NUMA sensitivity: samples/s relative to local placement").properties(width=300)


def scaling_chart(database: Source, folder: str | None = None) -> alt.Chart | None:
    """Time per sample against parameters (log-log), one line per execution mode and shape."""
    where, params = _scope(folder)
    with _reading(database) as con:
        df = con.execute(
            "SELECT coalesce(study || ' ', '') || coalesce(execution, 'eager') || ' ' || height || 'px b' || batch_size "
            "|| CASE WHEN coalesce(pinned_memory, true) THEN '' ELSE ' pageable' END AS series, model_name, median(parameters) AS parameters, 1000.0 / median(samples_per_s) AS ms_per_sample FROM runs "
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
    if _both(table["pinned_memory"].map(_memory)):  # pinned and pageable each have their own crossover
        shown.insert(3, "host memory", table["pinned_memory"].map(_memory))
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
        "pen": _view(con, "numa_penalty", "*", folder),
        "comp": _view(con, "compile_speedup", "model_name, execution, pinned_memory, forward_speedup, break_even_samples", folder),
        "split": _view(con, "penalty_split", "*", folder),
        "noise": _view(con, "process_noise", "*", folder),
    }


def _write_guide(out_dir: Path, topology: dict[str, Any] | None, views: dict[str, pd.DataFrame],
                 cross: pd.DataFrame, laws: pd.DataFrame) -> Path:
    recs, pen, comp = views["recs"], views["pen"], views["comp"]
    split, noise = views.get("split", pd.DataFrame()), views.get("noise", pd.DataFrame())
    # Where both were measured, every answer names the host memory (and the placement mode) it is about.
    memories = {_memory(v) for frame in (recs, pen, comp, cross, noise) if len(frame) and "pinned_memory" in frame
                for v in frame["pinned_memory"]}
    memories |= set(laws["host_memory"]) if len(laws) and "host_memory" in laws else set()
    name_memory = len(memories) > 1
    name_mode = len(pen) > 0 and _both(pen["placement_mode"])

    def memory(pinned: Any) -> str:
        return f", {_memory(pinned)} host memory" if name_memory else ""

    lines = ["# Best practices from the measured runs", ""]
    if topology:
        lines += [f"Host `{topology.get('host')}`: {len(topology.get('nodes', []))} NUMA node(s), "
                  f"{len(topology.get('gpus', []))} GPU(s).", ""]
    lines += ["## Fastest settings per model and image size", ""]
    for r in recs.itertuples():
        lines.append(f"- **{r.model_name}** at {r.height}px: lane `{r.best_lane}` ({r.placement}), execution "
                     f"`{r.execution}`, batch {r.batch_size}{memory(r.pinned_memory)}: {r.samples_per_s:.0f} samples/s "
                     f"(median of {r.evidence_runs} run(s)).")
    lines += ["", "## NUMA placement", ""]
    paired = pen[pen["throughput_penalty"].notna()] if len(pen) else pen
    if len(paired):
        lines += _guide_penalties(paired, memory, name_mode)
    else:
        lines.append("- Not measurable here: no remote placement was run (a host with one NUMA node has none). "
                     "The penalty, its confidence interval and the pairing advice need a multi-node host.")
    if len(split):
        lines += ["", "## NUMA penalty split (DMA part and CPU-side part)", ""]
        for r in split.itertuples():
            lines.append(f"- {r.model_name} ({r.execution}, {r.height}px batch {r.batch_size}{memory(r.pinned_memory)}): "
                         f"process placement {_verdict_text(r.process_penalty, r.process_mde, r.process_status)}; "
                         f"DMA part (pool placement) {_verdict_text(r.dma_penalty, r.dma_mde, r.dma_status)}; "
                         f"CPU-side part {_verdict_text(r.cpu_side_penalty, r.cpu_side_mde, r.cpu_side_status)}.")
    spread = noise[noise["processes"] >= 2] if len(noise) else noise
    if len(spread):
        lines += ["", "## Noise between worker processes (what a comparison here can detect)", ""]
        for r in spread.itertuples():
            mode = f", {r.placement_mode} placement" if name_mode else ""
            lines.append(f"- {r.model_name} ({r.execution}, {r.height}px batch {r.batch_size}{memory(r.pinned_memory)}{mode}, "
                         f"{r.placement}): between-process CV {r.between_process_cv:.1%} over {r.processes} processes; "
                         f"a comparison with {r.processes} processes a side detects {r.aa_mde:.1%} (A/A MDE).")
    if len(cross):
        lines += ["", "## Compute vs copies (crossover)", ""]
        for r in cross.itertuples():
            where = f"{r.height}px, batch {r.batch_size}, `{r.execution}`{memory(r.pinned_memory)}"
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
            mem = f", {r.host_memory} host memory" if name_memory else ""
            lines.append(f"- {r.experiment} {r.study} ({r.execution}, {r.image}px, batch {r.batch}{mem}, {r.models} models): "
                         f"{r.law}, R^2 {r.R2:.3f}: {r.regime}.")
    if len(comp):
        lines += ["", "## torch.compile", ""]
        for r in comp.itertuples():
            pays = pd.notna(r.break_even_samples) and r.break_even_samples
            after = f"pays off after {r.break_even_samples:.0f} samples" if pays else "never pays off in steady state"
            lines.append(f"- {r.model_name} `{r.execution}`{memory(r.pinned_memory)}: {r.forward_speedup:.2f}x forward speed-up; {after}.")
    path = out_dir / "best_practices.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _guide_penalties(pen: pd.DataFrame, memory: Any, name_mode: bool) -> list[str]:
    """One line per configuration with both placements: the penalty only where it is at least its MDE."""
    lines = []
    order = pen.assign(_detected=pen["status"] == "measured").sort_values(
        ["_detected", "throughput_penalty"], ascending=[False, False], kind="stable")
    for r in order.itertuples():
        mode = f", {r.placement_mode} placement" if name_mode else ""
        what = f"{r.model_name} ({r.execution}, {r.height}px batch {r.batch_size}{memory(r.pinned_memory)}{mode}, {r.regime})"
        sides = f"{r.local_processes} local and {r.remote_processes} remote processes"
        if r.status == "measured":
            cost = (f"remote placement costs {r.throughput_penalty:.1%} of samples/s" if r.throughput_penalty >= 0
                    else f"remote placement is {-r.throughput_penalty:.1%} faster")
            lines.append(f"- {what}: {cost} (95% CI {r.penalty_low:.1%} to {r.penalty_high:.1%}, MDE {r.mde:.1%}; {sides}).")
        elif pd.notna(r.mde):
            lines.append(f"- {what}: {r.status}; more processes a side (test.repeats) lower the MDE ({sides}).")
        else:
            lines.append(f"- {what}: {r.status}.")
    return lines


def scaling_laws(database: Source, folder: str | None = None) -> pd.DataFrame:
    """Time per sample against parameters, fitted as a power law per experiment, study (a depth sweep and a
    dim sweep are fitted apart), execution and shape."""
    with _reading(database) as con:
        return _fit_laws(_law_points(con, folder))


def _law_points(con: duckdb.DuckDBPyConnection, folder: str | None) -> pd.DataFrame:
    where, params = _scope(folder)
    return con.execute(
        f"SELECT experiment, coalesce(study, '') AS study, coalesce(execution, 'eager') AS execution, device, height, "
        f"batch_size, coalesce(pinned_memory, true) AS pinned_memory, model_name, median(parameters) AS parameters, median(samples_per_s) AS samples_per_s FROM runs "
        f"WHERE success AND {where} GROUP BY ALL",
        params,
    ).df()


def _fit_laws(df: pd.DataFrame) -> pd.DataFrame:
    from numa_ops.analysis import fit_power_law

    rows = []
    keys = ["experiment", "study", "execution", "device", "height", "batch_size"]
    if "pinned_memory" in df:  # pinned and pageable host memory are fitted apart, never pooled
        df = df.assign(host_memory=df["pinned_memory"].map(_memory))
        keys.append("host_memory")
    for key, group in df.groupby(keys):
        fit = fit_power_law(list(group["parameters"]), list(1.0 / group["samples_per_s"]))
        if fit is None:
            continue
        rows.append({
            "experiment": key[0], "study": key[1], "execution": key[2], "device": key[3], "image": key[4], "batch": key[5],
            **({"host_memory": key[6]} if len(key) > 6 else {}),
            "models": fit.points, "exponent": round(fit.exponent, 4), "law": f"s/sample = {fit.prefactor:.3g} * params^{fit.exponent:.3f}",
            "R2": round(fit.r_squared, 4), "max |log10 residual|": round(fit.max_abs_residual, 3), "regime": fit.regime(),
        })
    return pd.DataFrame(rows)


# What a penalty's interval covers (column ``ci_basis``).
BETWEEN_RUNS = "between worker processes: t interval of ln samples/s over one headline per process"
ONE_PROCESS_A_SIDE = store.ONE_PROCESS

PENALTY_KEY = store.PENALTY_KEY  # the numa_penalty view's configuration (host memory and placement mode included)
PENALTY_RUNS_SQL = """
SELECT host, gpu_id, model_name, depth, dim, height, width, batch_size, coalesce(execution, 'eager') AS execution,
       coalesce(pinned_memory, true) AS pinned_memory, coalesce(placement_mode, 'process') AS placement_mode,
       placement, samples_per_s, cpu_control_rate
FROM runs WHERE success AND device = 'cuda' AND placement IN ('local', 'remote') AND samples_per_s > 0 AND {where}
ORDER BY run_id
"""


def numa_penalties(database: Source, folder: str | None = None) -> pd.DataFrame:
    """Remote vs local penalty per configuration, host memory and placement mode: the ``numa_penalty`` view's.

    The process is the unit: the interval is the view's between-process t interval and the MDE its own
    (``analysis.process_penalty`` computes the same). ``penalty`` is given only where it is at least the MDE;
    ``verdict`` says "measured", "not detectable at this noise (MDE x%)" or that there was one process a side.
    Where every process of a configuration recorded the CPU-speed control (``cpu_control_rate``), the
    CUPED-adjusted penalty, its interval and MDE, and the share of the between-process variance the control
    explains (``control R^2``) are given beside it (``analysis.cuped_penalty``).
    """
    with _reading(database) as con:
        rows = _penalty_rows(con, folder)
    return _penalty_table(*rows)


def _penalty_rows(con: duckdb.DuckDBPyConnection, folder: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    where, params = _scope(folder)
    pen = _view(con, "numa_penalty", "*", folder)
    runs = con.execute(PENALTY_RUNS_SQL.format(where=where), params).df()
    return pen, runs


def _both(series: pd.Series) -> bool:
    """Whether a scope holds both values of a setting (then every answer names which one it is about)."""
    return series.dropna().nunique() > 1


def _memory(pinned: Any) -> str:
    return "pageable" if pinned is False or (not pd.isna(pinned) and not pinned) else "pinned"


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _key(row: Any) -> tuple:
    """A row's configuration (``PENALTY_KEY``) as a dictionary key: a missing value is None, never NaN."""
    return tuple(None if pd.isna(v := getattr(row, c)) else v for c in PENALTY_KEY)


def _penalty_table(pen: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration of the ``numa_penalty`` view with both placements measured."""
    from numa_ops.analysis import cuped_penalty

    pen = pen[pen["local_processes"].gt(0) & pen["remote_processes"].gt(0)] if len(pen) else pen
    controls: dict[tuple, dict[str, list[tuple[float, float]]]] = {}
    if runs is not None and len(runs):
        for r in runs.itertuples(index=False):
            key = _key(r)
            controls.setdefault(key, {}).setdefault(r.placement, []).append((r.samples_per_s, r.cpu_control_rate))
    out = []
    for r in pen.itertuples(index=False):
        status = r.status
        row = {"host": r.host, "model": r.model_name, "gpu": r.gpu_id, "image": r.height, "batch": r.batch_size,
               "execution": r.execution, "host memory": _memory(r.pinned_memory), "placement mode": r.placement_mode,
               "regime": r.regime, "local processes": int(r.local_processes), "remote processes": int(r.remote_processes),
               "penalty": _num(r.throughput_penalty) if status == "measured" else None,
               "95% CI low": _num(r.penalty_low), "95% CI high": _num(r.penalty_high), "MDE": _num(r.mde),
               "verdict": status, "ci_basis": BETWEEN_RUNS if r.penalty_low is not None and not pd.isna(r.penalty_low)
               else ONE_PROCESS_A_SIDE,
               "CPU-adjusted penalty": None, "adjusted CI low": None, "adjusted CI high": None, "adjusted MDE": None,
               "control R^2": None}
        got = controls.get(_key(r), {})
        sides = [got.get(p, []) for p in ("local", "remote")]
        if all(sides) and all(not pd.isna(x) for side in sides for _, x in side):
            adj = cuped_penalty([y for y, _ in sides[0]], [y for y, _ in sides[1]],
                                [x for _, x in sides[0]], [x for _, x in sides[1]])
            if adj is not None:
                a = adj.adjusted
                row.update({"CPU-adjusted penalty": a.penalty if a.detectable else None, "adjusted CI low": a.low,
                            "adjusted CI high": a.high, "adjusted MDE": a.mde, "control R^2": adj.r_squared})
        out.append(row)
    return pd.DataFrame(out)


def _penalty_html(table: pd.DataFrame, split: pd.DataFrame) -> str:
    """index.html's penalty section: a verdict in words where the penalty is below its MDE, never a figure."""
    if not len(table):
        return ""
    shown = table.copy()
    if shown["CPU-adjusted penalty"].isna().all() and shown["control R^2"].isna().all():
        shown = shown.drop(columns=["CPU-adjusted penalty", "adjusted CI low", "adjusted CI high", "adjusted MDE", "control R^2"])
    shown["penalty"] = [f"{v:.3f}" if v is not None and not pd.isna(v) else verdict
                        for v, verdict in zip(shown["penalty"], shown["verdict"], strict=True)]
    html_ = ("<h2>NUMA penalty (remote vs local samples/s, between worker processes, 95% t interval)</h2>"
             "<p>Each run is one worker process and its headline samples/s is one draw: the penalty is 1 - exp(mean "
             "ln remote - mean ln local) over the processes, the interval a two-sample t interval of the logs (pooled "
             "spread), and the MDE the smallest penalty this noise lets 2 sides of this size detect (95% confidence, 80% "
             "power). A penalty below its MDE is reported as not detectable; with one process a side there is no "
             "interval (set <code>test.repeats</code> &gt;= 2). Pinned and pageable host memory, and the process and "
             "pool placement modes, are never pooled: each has its own row.</p>"
             + shown.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-", classes="data penalty"))
    if len(split):
        parts = pd.DataFrame({
            "model": split["model_name"], "image": split["height"], "batch": split["batch_size"],
            "execution": split["execution"], "host memory": split["pinned_memory"].map(_memory),
            "process penalty": [_verdict_text(p, m, st) for p, m, st in
                                zip(split["process_penalty"], split["process_mde"], split["process_status"], strict=True)],
            "DMA part (pool)": [_verdict_text(p, m, st) for p, m, st in
                                zip(split["dma_penalty"], split["dma_mde"], split["dma_status"], strict=True)],
            "CPU-side part (process beyond pool)": [
                _verdict_text(p, m, st) for p, m, st in
                zip(split["cpu_side_penalty"], split["cpu_side_mde"], split["cpu_side_status"], strict=True)],
        })
        html_ += ("<h2>Penalty split: DMA part and CPU-side part</h2><p>Where both placement modes were measured: "
                  "<code>pool</code> moves only the host pool (the DMA part), <code>process</code> moves the CPU and "
                  "all memory; the CPU-side part is what the process penalty adds beyond the pool's "
                  "((1 - process) = (1 - DMA) x (1 - CPU side)).</p>" + parts.to_html(index=False, classes="data split"))
    return html_


def _verdict_text(penalty: Any, mde: Any, status: str) -> str:
    """A penalty as the product may quote it: the figure with its MDE when measured, else the verdict's words."""
    if status == "measured":
        return f"{penalty:.1%} (MDE {mde:.1%})"
    return status


def _noise_html(noise: pd.DataFrame) -> str:
    rows = noise[noise["processes"] >= 2] if len(noise) else noise
    if not len(rows):
        return ""
    shown = pd.DataFrame({
        "model": rows["model_name"], "device": rows["device"], "image": rows["height"], "batch": rows["batch_size"],
        "execution": rows["execution"], "host memory": rows["pinned_memory"].map(_memory),
        "placement mode": rows["placement_mode"], "placement": rows["placement"], "processes": rows["processes"],
        "between-process CV": rows["between_process_cv"].map(lambda v: f"{v:.2%}"),
        "A/A MDE": rows["aa_mde"].map(lambda v: f"{v:.2%}"),
    })
    return ("<h2>Noise between worker processes (the noise floor)</h2><p>The spread of one configuration's headline "
            "samples/s between separate worker processes at one placement, and the smallest penalty a comparison "
            "with as many processes a side could detect at this noise (A/A MDE, 95% confidence, 80% power).</p>"
            + shown.to_html(index=False, classes="data noise"))


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
        penalty_rows = _penalty_rows(con, folder)
        law_points = _law_points(con, folder)
        guide_views = _guide_views(con, folder)
    penalties = _penalty_table(*penalty_rows)
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
        footer += _penalty_html(penalties, guide_views["split"])
    elif (df["device"] == "cuda").any():
        footer += ("<h2>NUMA penalty</h2><p>No remote placement was measured in these runs (on a host with one "
                   "NUMA node none exists), so no penalty is reported.</p>")
    if len(laws):
        footer += ("<h2>Scaling laws (time per sample vs parameters, least squares in log space)</h2>"
                   + laws.to_html(index=False, classes="data"))
    footer += _noise_html(guide_views["noise"])
    footer += _crossover_html(crossovers)
    if fail_rows:
        footer += f'<h2>Failed runs</h2><table class="data"><tr><th>run_id</th><th>error</th></tr>{fail_rows}</table>'
    doc = _page(title, header, charts, footer)
    _write_guide(out_dir, topology, guide_views, crossovers, laws)
    index = out_dir / "index.html"
    index.write_text(doc)
    (out_dir / "report.json").write_text(json.dumps({"title": title, "rows": len(df), "failed": len(failed), "charts": list(charts)}))
    return index
