"""Render: one Altair chart per figure, each a pure function of the frames read (no chart queries the database).

Every figure says how many worker processes (and, where recorded, trials) stand behind each mark, and draws
its interval where one exists; legends and axes read as words.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from numa_ops.analysis import has_both as _both
from numa_ops.report.format import configurations, human, paired_configuration, shapes, varying


def label_lanes(lanes: pd.DataFrame) -> pd.DataFrame:
    """``lanes`` with ``series`` (a bar's legend entry) and ``row`` (a bar's axis label), both in words."""
    df = lanes.copy()
    df["series"] = df["lane"] + ": " + shapes(df, "image")
    df["row"] = configurations(df, "image")  # a pageable pool says so
    if _both(df["host_memory"]):  # pinned and pageable each have their own bar, and say which they are
        df["series"] = df["series"] + ", " + df["host_memory"] + " host memory"
    if _both(df["placement_mode"]):
        df["series"] = df["series"] + ", " + df["placement_mode"] + " placement"
        df["row"] = df["row"] + " | " + df["placement_mode"] + " placement"
    for col, words in varying(df).items():  # rows one test setting apart are bars of their own, and say which
        df["series"] = df["series"] + ", " + words + " " + df[col].map(human)
        df["row"] = df["row"] + " | " + words + " " + df[col].map(human)
    if df["lane"].nunique() > 1:
        df["row"] = df["row"] + " | " + df["lane"]
    return df


_WORDS = alt.Legend(labelLimit=420)  # legend entries are sentences: show them whole
_EVIDENCE = [alt.Tooltip("ok_runs:Q", title="worker processes"), alt.Tooltip("trials:Q", title="trials")]


def throughput_chart(lanes: pd.DataFrame) -> alt.Chart:
    """Samples/s per model, one bar per lane, execution mode and shape, with its 95% interval as an error bar."""
    base = alt.Chart(lanes).encode(
        x=alt.X("model_name:N", title="model", sort=None),
        xOffset=alt.XOffset("series:N", title="lane: execution, shape"),
        tooltip=[
            "experiment",
            alt.Tooltip("model_name:N", title="model"),
            "lane",
            "execution",
            "device",
            "placement",
            "regime",
            alt.Tooltip("rate:Q", title="samples/s", format=".4~g"),
            alt.Tooltip("rate_low:Q", title="95% CI low", format=".4~g"),
            alt.Tooltip("rate_high:Q", title="95% CI high", format=".4~g"),
            alt.Tooltip("ci_basis:N", title="interval"),
            *_EVIDENCE,
            alt.Tooltip("pipelined_samples_per_s:Q", title="pipelined samples/s", format=".4~g"),
        ],
    )
    bars = base.mark_bar().encode(
        y=alt.Y("rate:Q", title="samples/s (serial; 95% CI bars)"),
        color=alt.Color("series:N", title="lane: execution, shape", legend=_WORDS),
    )
    errors = base.mark_rule(color="black").encode(y="rate_low:Q", y2="rate_high:Q")
    return alt.layer(bars, errors, title="Throughput per model (samples/s, 95% interval)").properties(
        width=520, height=260
    )


def stage_chart(lanes: pd.DataFrame) -> alt.Chart:
    """Stacked median per-batch time: H2D copy, forward, D2H copy."""
    long = lanes.melt(
        id_vars=["row", "model_name", "lane", "device", "ok_runs", "trials"],
        value_vars=["h2d_ms", "forward_ms", "d2h_ms"],
        var_name="stage",
        value_name="ms",
    ).dropna(subset=["ms"])
    long["stage"] = long["stage"].map({"h2d_ms": "1 H2D copy", "forward_ms": "2 forward", "d2h_ms": "3 D2H copy"})
    return (
        alt.Chart(long, title="Stage breakdown per batch (median ms over worker processes)")
        .mark_bar()
        .encode(
            y=alt.Y("row:N", title=None, sort=None, axis=alt.Axis(labelLimit=480)),
            x=alt.X("ms:Q", title="ms per batch", stack="zero"),
            color=alt.Color("stage:N", sort="ascending", title="stage"),
            order=alt.Order("stage:N"),
            tooltip=[
                alt.Tooltip("model_name:N", title="model"),
                "lane",
                "stage",
                alt.Tooltip("ms:Q", format=".3f"),
                *_EVIDENCE,
            ],
        )
        .properties(width=520)
    )


def regime_chart(lanes: pd.DataFrame) -> alt.Chart:
    """Where a batch's time goes: copies, the GPU's own compute, and launch overhead; labelled by regime."""
    gpu = lanes.dropna(subset=["fwd_gpu_ms"]).copy()
    gpu["copies (H2D + D2H)"] = gpu["h2d_ms"] + gpu["d2h_ms"]
    gpu["GPU compute (graph replay)"] = gpu["fwd_gpu_ms"]
    gpu["launch overhead"] = (gpu["forward_ms"] - gpu["fwd_gpu_ms"]).clip(lower=0)
    gpu["row"] = gpu["row"] + "  [" + gpu["regime"].fillna("?") + "]"
    long = gpu.melt(
        id_vars=["row", "regime", "ok_runs", "trials"],
        value_vars=["copies (H2D + D2H)", "GPU compute (graph replay)", "launch overhead"],
        var_name="component",
        value_name="ms",
    )
    return (
        alt.Chart(long, title="Regimes: launch-bound, transfer-bound or compute-bound (median ms per batch)")
        .mark_bar()
        .encode(
            y=alt.Y("row:N", title=None, sort=None, axis=alt.Axis(labelLimit=480)),
            x=alt.X("ms:Q", title="ms per batch", stack="zero"),
            color=alt.Color("component:N", title="where the time goes"),
            tooltip=["row", "component", "regime", alt.Tooltip("ms:Q", format=".3f"), *_EVIDENCE],
        )
        .properties(width=520)
    )


def transfer_charts(transfer: pd.DataFrame) -> dict[str, alt.Chart]:
    """H2D GB/s and bytes per sample against image size (D2H should stay flat with ViTForProfiling)."""
    if not len(transfer) or transfer["image"].nunique() < 2:
        return {}
    df = transfer.copy()
    df["series"] = (df["model_name"] + ", batch " + df["batch_size"].astype(str) + ", " + df["host_memory"]
                    + " host memory")
    evidence = [alt.Tooltip("processes:Q", title="worker processes"), alt.Tooltip("trials:Q", title="trials")]
    base = alt.Chart(df).encode(x=alt.X("image:Q", title="image size (px)"),
                                color=alt.Color("series:N", title="model, batch, host memory", legend=_WORDS))
    h2d = base.mark_line(point=True).encode(
        y=alt.Y("h2d_gbps:Q", title="H2D GB/s (median over processes)"),
        tooltip=["series", "image", alt.Tooltip("h2d_gbps:Q", format=".3g"), *evidence],
    ).properties(title="H2D bandwidth vs image size", width=420, height=220)
    long = df.melt(
        id_vars=["image", "series", "processes"],
        value_vars=["h2d_bytes_per_sample", "d2h_bytes_per_sample"],
        var_name="direction",
        value_name="bytes",
    )
    long["direction"] = long["direction"].map({"h2d_bytes_per_sample": "H2D (host to GPU)",
                                               "d2h_bytes_per_sample": "D2H (GPU to host)"})
    byte = (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("image:Q", title="image size (px)"),
            y=alt.Y("bytes:Q", title="bytes per sample", scale=alt.Scale(type="log")),
            color=alt.Color("series:N", title="model, batch, host memory"),
            strokeDash=alt.StrokeDash("direction:N", title="direction"),
            tooltip=[
                "series",
                "direction",
                alt.Tooltip("bytes:Q", format=".3~s"),
                alt.Tooltip("processes:Q", title="worker processes"),
            ],
        )
        .properties(title="Bytes per sample vs image size (D2H flat by design)", width=420, height=220)
    )
    return {"h2d_vs_image": h2d, "bytes_vs_image": byte}


def compile_chart(speedups: pd.DataFrame) -> alt.Chart | None:
    """torch.compile's forward speed-up per model and mode, from the ``compile_speedup`` view."""
    if not len(speedups):
        return None
    return (
        alt.Chart(speedups, title="torch.compile forward speed-up over eager (median over processes)")
        .mark_bar()
        .encode(
            x=alt.X("model_name:N", title="model", sort=None),
            xOffset=alt.XOffset("execution:N"),
            y=alt.Y("speedup:Q", title="speed-up (x)"),
            color=alt.Color("execution:N", title="execution mode"),
            tooltip=[
                alt.Tooltip("model_name:N", title="model"),
                "execution",
                alt.Tooltip("speedup:Q", format=".2f"),
                alt.Tooltip("processes:Q", title="worker processes"),
            ],
        )
        .properties(width=420, height=220)
    )


def regression_chart(verdicts: pd.DataFrame) -> alt.Chart | None:
    """Nightly verdicts over time: tonight's change against the baseline per configuration, with the range its
    two 95% intervals allow as an error bar."""
    if not len(verdicts):
        return None
    base = alt.Chart(verdicts).encode(
        x=alt.X("checked_at:T", title="night (first checked)", axis=alt.Axis(format="%Y-%m-%d %H:%M"))
    )
    points = base.mark_point(filled=True, size=60).encode(
        y=alt.Y("change:Q", title="change vs baseline (samples/s)", axis=alt.Axis(format="%")),
        color=alt.Color("verdict:N", title="verdict"),
        tooltip=["night", "config", "verdict", alt.Tooltip("change:Q", format=".1%"),
                 alt.Tooltip("change_low:Q", title="lowest change the intervals allow", format=".1%"),
                 alt.Tooltip("change_high:Q", title="highest change the intervals allow", format=".1%")],
    )
    bars = base.mark_rule().encode(y="change_low:Q", y2="change_high:Q", color=alt.Color("verdict:N"))
    return alt.layer(bars, points, title="Nightly regression timeline").properties(width=420, height=220)


def _heatmap_configs(pen: pd.DataFrame) -> pd.Series:
    """Each penalty row's configuration in words; host memory, placement mode and host only where they differ."""
    config = configurations(pen, name_memory=_both(pen["pinned_memory"])) + " | gpu" + pen["gpu_id"].astype(str)
    if _both(pen["placement_mode"]):
        config = config + " " + pen["placement_mode"] + " placement"
    for col, words in varying(pen).items():  # settings that differ between rows: each row names its own
        if col not in ("host", "gpu_id"):
            config = config + " " + words + " " + pen[col].map(human)
    if pen["host"].nunique() > 1:
        config = config + " | " + pen["host"].fillna("?")
    return config


def _heatmap_cells(pen: pd.DataFrame) -> pd.DataFrame:
    """Two cells per configuration: local (the reference) and remote (its penalty, or why there is none)."""
    config = _heatmap_configs(pen)

    def dist(col: str) -> pd.Series:
        return pen[col].map(lambda d: "?" if pd.isna(d) else str(int(d)))

    measured = pen["status"] == "measured"
    remote_text = [f"{-p:+.1%}" if ok else ("not detectable (MDE " + f"{m:.1%})" if pd.notna(m) else "1 process a side")
                   for p, m, ok in zip(pen["throughput_penalty"], pen["mde"], measured, strict=True)]
    shared = {"model_name": pen["model_name"], "config": config, "regime": pen["regime"], "verdict": pen["status"]}
    return pd.concat([
        pd.DataFrame({**shared, "placement": "local (d=" + dist("local_numa_distance") + ")", "relative": 1.0,
                      "samples_per_s": pen["local_samples_per_s"], "label": "reference",
                      "processes": pen["local_processes"], "ci": "-"}),
        pd.DataFrame({**shared, "placement": "remote (d=" + dist("remote_numa_distance") + ")",
                      "relative": (1 - pen["throughput_penalty"]).where(measured),
                      "samples_per_s": pen["remote_samples_per_s"], "label": remote_text,
                      "processes": pen["remote_processes"],
                      "ci": [f"penalty {lo:.1%} to {hi:.1%}" if pd.notna(lo) else "-"
                             for lo, hi in zip(pen["penalty_low"], pen["penalty_high"], strict=True)]}),
    ], ignore_index=True)


def sensitivity_heatmap(pen: pd.DataFrame) -> alt.Chart | None:
    """Samples/s per configuration x placement, relative to the configuration's local placement.

    From the ``numa_penalty`` view (remote = 1 - its ``throughput_penalty``), as best_practices.md is, so the page
    and the guide show the same penalty for the same configuration. Each remote cell says its penalty and 95%
    interval where that interval excludes 0; otherwise "not detectable (MDE x%)" (no colour), or that one process a
    side gives no interval. Where both pinned and pageable host memory (or both placement modes) were measured,
    each row names which one it is.
    """
    pen = pen[pen["throughput_penalty"].notna()]
    if not len(pen):
        return None  # no remote placement paired with a local one: nothing to map (the notes say why)
    base = alt.Chart().encode(
        x=alt.X("placement:N", title="placement (SLIT distance)"),
        y=alt.Y("config:N", title="model | GPU, shape, execution", axis=alt.Axis(labelLimit=480)),
        tooltip=[alt.Tooltip("model_name:N", title="model"), "config", "placement", "regime", "verdict",
                 alt.Tooltip("processes:Q", title="worker processes"), alt.Tooltip("ci:N", title="95% CI"),
                 alt.Tooltip("relative:Q", format=".3f"), alt.Tooltip("samples_per_s:Q", format=".0f")],
    )
    rect = base.mark_rect().encode(color=alt.Color("relative:Q", title="samples/s relative to local",
                                                   scale=alt.Scale(scheme="redyellowgreen", domainMid=1.0)))
    text = base.mark_text(fontSize=10).encode(text="label:N")
    return alt.layer(rect, text, data=_heatmap_cells(pen),
                     title="NUMA sensitivity: samples/s relative to local placement").properties(width=300)


def scaling_chart(scaling: pd.DataFrame) -> alt.Chart | None:
    """Time per sample against parameters (log-log), one line per execution mode and shape; the bar at each point
    spans the fastest to the slowest worker process."""
    if not len(scaling) or scaling["model_name"].nunique() < 3:
        return None
    base = alt.Chart(scaling).encode(
        x=alt.X("parameters:Q", title="parameters", scale=alt.Scale(type="log")),
        color=alt.Color("series:N", title="study, execution, shape", legend=_WORDS),
        tooltip=[alt.Tooltip("model_name:N", title="model"), "series", alt.Tooltip("ms_per_sample:Q", format=".4f"),
                 alt.Tooltip("processes:Q", title="worker processes"), alt.Tooltip("trials:Q", title="trials"),
                 alt.Tooltip("lanes:Q", title="lanes pooled")],
    )
    lines = base.mark_line(point=True).encode(
        y=alt.Y("ms_per_sample:Q", title="ms per sample (bar: range over processes)", scale=alt.Scale(type="log")))
    spread = base.mark_rule().encode(y="ms_per_sample_low:Q", y2="ms_per_sample_high:Q")
    return alt.layer(
        lines, spread, title="Scaling: time per sample vs parameters (fits in the table below)"
    ).properties(width=420, height=240)


def crossover_chart(models: pd.DataFrame, table: pd.DataFrame) -> alt.Chart | None:
    """GPU compute and copy time per batch against FLOPs per sample, with a rule where compute overtakes (RQ2)."""
    if not len(models) or models.groupby("series")["model_name"].nunique().max() < 2:
        return None
    long = models.melt(id_vars=["series", "model_name", "flops_per_sample", "processes", "lanes"],
                       value_vars=["GPU compute", "copies (H2D + D2H)"], var_name="component", value_name="ms"
                       ).dropna(subset=["ms"])
    lines = (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("flops_per_sample:Q", title="FLOPs per sample", scale=alt.Scale(type="log")),
            y=alt.Y("ms:Q", title="ms per batch (median over processes)", scale=alt.Scale(type="log")),
            color=alt.Color("series:N", title="execution, shape", legend=_WORDS),
            strokeDash=alt.StrokeDash("component:N", title="component"),
            tooltip=[
                "series",
                alt.Tooltip("model_name:N", title="model"),
                "component",
                alt.Tooltip("ms:Q", format=".3f"),
                alt.Tooltip("processes:Q", title="worker processes"),
                alt.Tooltip("lanes:Q", title="lanes pooled"),
            ],
        )
    )
    marks = table.assign(
        series=shapes(table, memory=True),
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


def paired_chart(paired: pd.DataFrame) -> alt.Chart | None:
    """Each paired comparison's penalty with its 95% interval (a bar from low to high), the control-adjusted one
    beside it for memory arms; a rule at 0. One row per configuration, part measured and arms."""
    if not len(paired):
        return None
    row = (
        paired_configuration(paired)
        + " | "
        + paired["part"]
        + " | "
        + paired["arm_name"]
        + " vs "
        + paired["reference_name"]
    )
    shared = {
        "row": row,
        "verdict": paired["verdict"],
        "blocks": paired["blocks"],
        "gpu_seconds": paired["gpu_seconds"],
        "mde": paired["mde"],
    }
    long = pd.concat([
        pd.DataFrame({**shared, "interval": "plain", "penalty": paired["penalty"], "low": paired["penalty_low"],
                      "high": paired["penalty_high"]}),
        pd.DataFrame({**shared, "interval": "control-adjusted", "penalty": paired["adjusted_penalty"],
                      "low": paired["adjusted_penalty_low"], "high": paired["adjusted_penalty_high"]}),
    ], ignore_index=True).dropna(subset=["penalty"])
    base = alt.Chart(long).encode(
        y=alt.Y("row:N", title=None, sort=None, axis=alt.Axis(labelLimit=560)),
        yOffset=alt.YOffset("interval:N", sort=["plain", "control-adjusted"]),
        color=alt.Color("interval:N", title="interval", sort=["plain", "control-adjusted"]),
        tooltip=[
            "row",
            "interval",
            "verdict",
            alt.Tooltip("penalty:Q", format=".1%"),
            alt.Tooltip("low:Q", title="95% CI low", format=".1%"),
            alt.Tooltip("high:Q", title="95% CI high", format=".1%"),
            alt.Tooltip("mde:Q", title="MDE", format=".1%"),
            alt.Tooltip("blocks:Q", title="ABBA blocks"),
            alt.Tooltip("gpu_seconds:Q", title="GPU seconds", format=".0f"),
        ],
    )
    bars = base.mark_rule(strokeWidth=3).encode(
        x=alt.X("low:Q", title="penalty (1 - arm / reference samples/s), 95% CI", axis=alt.Axis(format="%")),
        x2="high:Q",
    )
    points = base.mark_point(filled=True, size=50).encode(x="penalty:Q")
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4], color="gray").encode(x="x:Q")
    return alt.layer(
        bars, points, zero, title="Paired NUMA penalties (arms alternated in one worker process)"
    ).properties(width=420)
