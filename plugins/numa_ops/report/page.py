"""Render: ``index.html``, one offline page (Vega inlined once) of sections built from the frames read.

From the top: the gate's verdict, the host's topology, notes, the charts, then the tables: each figure with
its interval, the worker processes and trials behind it, and its MDE where it is a comparison.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

from numa_ops.analysis import has_both
from numa_ops.estimate import EstimateJson
from numa_ops.gate import GateVerdict
from numa_ops.labels import host_memory
from numa_ops.report.format import interval, paired_configuration, reason_text, table_html, varying
from numa_ops.report.guide import verdict_text
from numa_ops.report.read import ReportData
from numa_ops.roles import MEANING
from numa_ops.topology import TopologyJson

STYLE = """<style>body{font-family:sans-serif;margin:1.5em} table.data{border-collapse:collapse;font-size:12px}
table.data td,table.data th{border:1px solid #ccc;padding:2px 6px} .gate-passed{color:#060} .gate-failed{color:#b00}
.chart{margin:1em 0} .chart-error{color:#b00}
td.reason{white-space:pre-wrap;font-family:monospace}</style>"""


def gate_html(verdict: GateVerdict | None, scoped: bool) -> str:
    """The gate's verdict in its own words (gate.json's sentence), or why there is none."""
    if verdict is None:
        why = ("no gate: this run belongs to no phase" if scoped else
               "this page covers every run folder; each folder's own report shows its gate's verdict")
        return f'<p class="gate">Gate verdict: {html.escape(why)}.</p>'
    passed = verdict.passed
    sentence = verdict.said()
    problems = "".join(f"<li>{html.escape(str(p))}</li>" for p in verdict.problems)
    return (
        f'<p class="gate gate-{"passed" if passed else "failed"}"><b>Gate verdict:</b> {html.escape(str(sentence))}</p>'
        + (f"<ul class='gate-problems'>{problems}</ul>" if problems else "")
    )


def topology_html(topology: TopologyJson | None) -> str:
    """The host the runs were planned on: its NUMA nodes (CPUs, memory) and GPUs with their local node."""
    if not topology:
        return ("<p class='topology'>Host topology: not recorded for this page (runs from several hosts, or none "
                "saved).</p>")
    distances = topology.get("distances") or {}
    nodes = pd.DataFrame(
        [
            {
                "NUMA node": n.get("id"),
                "CPUs": _cpu_list(n.get("cpus")),
                "memory MB": n.get("mem_total_mb"),
                "SLIT distances": " ".join(map(str, distances.get(str(n.get("id")), []))) or None,
            }
            for n in topology.get("nodes", [])
        ]
    )
    gpus = pd.DataFrame([{"GPU": g.get("index"), "name": g.get("name"), "local NUMA node": g.get("numa_node"),
                          "PCI bus": g.get("pci_bus_id")} for g in topology.get("gpus", [])])
    out = (f"<h2>Host topology</h2><p>Host <code>{html.escape(str(topology.get('host')))}</code>: "
           f"{len(topology.get('nodes', []))} NUMA node(s), {len(topology.get('gpus', []))} GPU(s) "
           f"({html.escape(', '.join(sorted({str(g.get('name')) for g in topology.get('gpus', [])})) or 'none')}).</p>")
    if len(nodes) and nodes.notna().any().any():
        out += table_html(nodes.dropna(axis=1, how="all"), "data topology")
    if len(gpus):
        out += table_html(gpus.dropna(axis=1, how="all"), "data topology")
    return out


def _cpu_list(cpus: list[int] | None) -> str | None:
    """CPUs as ranges: ``0-15, 32-47``."""
    if not cpus:
        return None
    runs: list[list[int]] = []
    for c in sorted(cpus):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


def notes(data: ReportData, topology: TopologyJson | None) -> list[str]:
    """What a reader must know before the numbers: the host's own notes, studies it skipped, CPU runs, failures,
    pooled settings."""
    out = list((topology or {}).get("notes", []))
    out += [f"Study {s.study} was not run: this host cannot give it {MEANING.get(s.role, s.role)} "
            f"({s.reason})." for s in data.skipped_studies]
    lanes = data.lanes
    if len(lanes) and (lanes["device"] == "cpu").any():
        out.append("Runs on device cpu: there is no host-to-device copy, so H2D and D2H are not measured; "
                   "the stage breakdown shows the forward pass only.")
    if len(data.failures):
        out.append(f"{len(data.failures)} run(s) failed; see the table below and results.json.")
    pooled = [name for name, frame in (("scaling", data.scaling), ("crossover", data.crossover_models))
              if len(frame) and frame["lanes"].max() > 1]
    if pooled:
        out.append(f"The {' and '.join(pooled)} chart(s) take each model's median over all its lanes (placements); "
                   "each lane's own figure, with its interval, is in the table below.")
    mixed = lanes[lanes["mixed_settings"].fillna("") != ""] if len(lanes) else lanes
    if len(mixed):
        out.append(f"{len(mixed)} row(s) of the table below pool runs measured with different settings "
                   f"({', '.join(sorted(set(', '.join(mixed['mixed_settings']).split(', '))))}); "
                   "their column 'pooled settings' names which.")
    return out


def lanes_html(lanes: pd.DataFrame) -> str:
    """Per model and lane: samples/s with its 95% interval, the processes and trials behind it, the stage medians."""
    if not len(lanes):
        return ""
    settings = {words: lanes[col] for col, words in varying(lanes).items()}
    shown = pd.DataFrame(
        {
            "experiment": lanes["experiment"],
            "model": lanes["model_name"],
            "image": lanes["image"],
            "batch": lanes["batch_size"],
            "execution": lanes["execution"],
            "host memory": lanes["host_memory"],
            **settings,
            "lane": lanes["lane"],
            "device": lanes["device"],
            "placement": lanes["placement"],
            "placement mode": lanes["placement_mode"],
            "regime": lanes["regime"],
            "samples/s": lanes["rate"],
            "95% CI": [interval(lo, hi) for lo, hi in zip(lanes["rate_low"], lanes["rate_high"], strict=True)],
            "CI basis": lanes["ci_basis"],
            "worker processes": lanes["ok_runs"],
            "runs": lanes["runs"],
            "trials": lanes["trials"],
            "H2D ms": lanes["h2d_ms"],
            "forward ms": lanes["forward_ms"],
            "D2H ms": lanes["d2h_ms"],
            "H2D GB/s": lanes["h2d_gbps"],
            "pipelined samples/s": lanes["pipelined_samples_per_s"],
            "ideal samples/s": lanes["ideal_samples_per_s"],
            "GPU forward ms": lanes["fwd_gpu_ms"],
            "launch share": lanes["launch_overhead_share"],
            "FLOPs/sample": lanes["flops_per_sample"],
            "pooled settings": lanes["mixed_settings"].replace("", None),
        }
    )
    shown = shown.dropna(axis=1, how="all")
    return (
        "<h2>Per model and lane (samples/s with its 95% confidence interval)</h2><p>A lane is one placement: its "
        "repeats (worker processes <code>-r1</code>, <code>-r2</code>, ...) are one row. samples/s is the geometric "
        "mean of the worker processes' headlines; with several processes its interval is the t interval between "
        "them, with one it is that process's own interval over its trials (which says nothing of the noise between "
        "processes). Runs that differ in a test setting are never one row: the columns beside the host memory name "
        "the settings that differ between rows. A <code>paired</code> row is its reference arm's (see the paired "
        "penalties). Stage times are medians over the processes.</p>" + table_html(shown, "data lanes")
    )


def penalty_html(table: pd.DataFrame, split: pd.DataFrame) -> str:
    """The penalty section: a verdict in words where the penalty's interval holds 0, never a figure."""
    if not len(table):
        return ""
    shown = table.copy()
    if shown["CPU-adjusted penalty"].isna().all() and shown["control R^2"].isna().all():
        shown = shown.drop(
            columns=["CPU-adjusted penalty", "adjusted CI low", "adjusted CI high", "adjusted MDE", "control R^2"]
        )
    shown["penalty"] = [f"{v:.3f}" if v is not None and not pd.isna(v) else verdict
                        for v, verdict in zip(shown["penalty"], shown["verdict"], strict=True)]
    three = {c: (lambda v: "-" if v is None or pd.isna(v) else f"{v:.3f}")
             for c in shown.columns if shown[c].dtype.kind == "f" or c in ("95% CI low", "95% CI high", "MDE")}
    out = (
        "<h2>NUMA penalty (remote vs local samples/s, between worker processes, 95% t interval)</h2>"
        "<p>Each run is one worker process and its headline samples/s is one draw: the penalty is 1 - exp(mean "
        "ln remote - mean ln local) over the processes, the interval a two-sample t interval of the logs (pooled "
        "spread), and the MDE the smallest penalty this noise lets 2 sides of this size detect (95% confidence, 80% "
        "power). A penalty is measured when its 95% interval excludes 0 (its MDE stated beside it); where the "
        "interval holds 0 it is reported as not detectable at this noise, with the MDE; with one process a side "
        "there is no "
        "interval (set <code>test.repeats</code> &gt;= 2). Pinned and pageable host memory, and the process and "
        "pool placement modes, are never pooled: each has its own row.</p>" + table_html(shown, "data penalty", three)
    )
    if len(split):
        parts = pd.DataFrame(
            {
                "model": split["model_name"],
                "image": split["height"],
                "batch": split["batch_size"],
                "execution": split["execution"],
                "host memory": split["pinned_memory"].map(host_memory),
                "process penalty": [
                    verdict_text(p, m, st)
                    for p, m, st in zip(
                        split["process_penalty"], split["process_mde"], split["process_status"], strict=True
                    )
                ],
                "DMA part (pool)": [
                    verdict_text(p, m, st)
                    for p, m, st in zip(split["dma_penalty"], split["dma_mde"], split["dma_status"], strict=True)
                ],
                "CPU-side part (process beyond pool)": [
                    verdict_text(p, m, st)
                    for p, m, st in zip(
                        split["cpu_side_penalty"], split["cpu_side_mde"], split["cpu_side_status"], strict=True
                    )
                ],
            }
        )
        out += ("<h2>Penalty split: DMA part and CPU-side part</h2><p>Where both placement modes were measured: "
                "<code>pool</code> moves only the host pool (the DMA part), <code>process</code> moves the CPU and "
                "all memory; the CPU-side part is what the process penalty adds beyond the pool's "
                "((1 - process) = (1 - DMA) x (1 - CPU side)).</p>" + table_html(parts, "data split"))
    return out


def _pct(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.1%}"


def _pct_interval(low: Any, high: Any) -> str:
    return "-" if _pct(low) == "-" or _pct(high) == "-" else f"{_pct(low)} to {_pct(high)}"


def paired_html(paired: pd.DataFrame) -> str:
    """Paired penalties: one row per comparison of arms alternated trial by trial in one worker process."""
    if not len(paired):
        return ""
    memory = paired["kind"] == "memory"
    shown = pd.DataFrame(
        {
            "configuration": paired_configuration(paired),
            "part measured": paired["part"],
            "arms": paired["arm_name"] + " vs " + paired["reference_name"],
            "penalty": [
                _pct(p) if v == "measured" else "-" for p, v in zip(paired["penalty"], paired["verdict"], strict=True)
            ],
            "95% CI": [
                _pct_interval(lo, hi) for lo, hi in zip(paired["penalty_low"], paired["penalty_high"], strict=True)
            ],
            "control-adjusted penalty (95% CI)": [
                (f"{_pct(p)} ({_pct_interval(lo, hi)})" if pd.notna(p) else "not computed")
                if mem
                else "not used: the thread's node moves the control"
                for mem, p, lo, hi in zip(
                    memory,
                    paired["adjusted_penalty"],
                    paired["adjusted_penalty_low"],
                    paired["adjusted_penalty_high"],
                    strict=True,
                )
            ],
            "MDE": paired["mde"].map(_pct),
            "verdict": paired["verdict"],
            "blocks": paired["blocks"],
            "GPU seconds": paired["gpu_seconds"],
            "stopped on": paired["stop_reason"],
        }
    )
    return (
        "<h2>Paired NUMA penalties (arms alternated trial by trial in one worker process, 95% t interval over "
        "blocks)</h2><p>One worker process measures two or more arms of one configuration in ABBA blocks: memory "
        "arms move only the host pool and D2H buffers (the DMA part, the launching thread stays local), thread arms "
        "move only the launching thread (the CPU-side part, memory stays local). The penalty is 1 - the ratio of "
        "the arm's samples/s to the reference arm's, the mean of the blocks' differences of ln samples/s with its t "
        "interval over the blocks; for memory arms the interval after regressing each trial on the CPU-speed "
        "control is beside it (thread arms move the control, so they are never adjusted). A penalty is measured "
        "when its interval excludes 0; otherwise it is not detectable at this noise, and the MDE (95% confidence, "
        "80% power) is the smallest penalty these blocks could have found. GPU seconds: the paired trials of the "
        "run (shared by its comparisons where it has more than two arms).</p>" + table_html(shown, "data paired")
    )


def noise_html(noise: pd.DataFrame) -> str:
    rows = noise[noise["processes"] >= 2] if len(noise) else noise
    if not len(rows):
        return ""
    shown = pd.DataFrame({
        "model": rows["model_name"], "device": rows["device"], "image": rows["height"], "batch": rows["batch_size"],
        "execution": rows["execution"], "host memory": rows["pinned_memory"].map(host_memory),
        "placement mode": rows["placement_mode"], "placement": rows["placement"], "processes": rows["processes"],
        "between-process CV": rows["between_process_cv"].map(lambda v: f"{v:.2%}"),
        "A/A MDE": rows["aa_mde"].map(lambda v: f"{v:.2%}"),
    })
    return ("<h2>Noise between worker processes (the noise floor)</h2><p>The spread of one configuration's headline "
            "samples/s between separate worker processes at one placement, and the smallest penalty a comparison "
            "with as many processes a side could detect at this noise (A/A MDE, 95% confidence, 80% power).</p>"
            + table_html(shown, "data noise"))


def crossover_html(table: pd.DataFrame) -> str:
    if not len(table):
        return ""
    shown = pd.DataFrame(
        {
            "image": table["height"],
            "batch": table["batch_size"],
            "execution": table["execution"],
            "first compute-dominated model": table["first_compute_dominated_model"].fillna("none measured"),
            "its parameters": table["crossover_parameters"].map(lambda v: "-" if pd.isna(v) else f"{v:.3g}"),
            "its FLOPs/sample": table["crossover_flops_per_sample"].map(lambda v: "-" if pd.isna(v) else f"{v:.3g}"),
            "crossover FLOPs/sample (interpolated)": table["crossover_flops_estimate"].map(
                lambda v: "-" if pd.isna(v) else f"{v:.3g}"
            ),
            "last transfer-dominated model": table["last_transfer_dominated_model"].fillna("-"),
            "models": table["models"],
        }
    )
    if has_both(table["pinned_memory"].map(host_memory)):  # pinned and pageable each have their own crossover
        shown.insert(3, "host memory", table["pinned_memory"].map(host_memory))
    return ("<h2>Crossover (where the GPU's compute overtakes the H2D + D2H copies)</h2>"
            + table_html(shown, "data crossover"))


def laws_html(laws: pd.DataFrame) -> str:
    if not len(laws):
        return ""
    return ("<h2>Scaling laws (time per sample vs parameters, least squares in log space)</h2>"
            + table_html(laws, "data laws"))


def failures_html(failed: pd.DataFrame) -> str:
    """Every failed run with its lane, model and the reason it gave, as recorded: escaped, its line breaks kept."""
    if not len(failed):
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(r.run_id))}</td><td>{html.escape(str(r.lane))}</td>"
        f"<td>{html.escape(str(r.model_name))}</td><td class=\"reason\">{html.escape(reason_text(r.error))}</td></tr>"
        for r in failed.itertuples())
    return ('<h2>Failed runs</h2><table class="data failed"><thead><tr><th>run_id</th><th>lane</th><th>model</th>'
            f"<th>reason</th></tr></thead><tbody>{rows}</tbody></table>")


def estimate_against_actual_html(estimate: EstimateJson | None, actual: pd.DataFrame) -> str:
    """What plan_runs estimated the run folder would cost (estimate.json), beside what its runs took."""
    if not estimate:
        return ""
    row = actual.iloc[0] if len(actual) else pd.Series(dtype=object)
    gpu_actual = row.get("gpu_run_seconds")
    gpu_actual = row.get("run_seconds") if gpu_actual is None or pd.isna(gpu_actual) else gpu_actual
    rows = [("GPU seconds (the runs' own time)", estimate.get("gpu_s"), gpu_actual),
            ("wall seconds (first start to last end)", estimate.get("wall_s"), row.get("wall_seconds")),
            ("runs", estimate.get("runs"), row.get("runs"))]
    table = pd.DataFrame([{"quantity": q, "estimated": e, "actual": a,
                           "actual / estimated": (a / e) if isinstance(e, int | float) and e and a is not None
                           and not pd.isna(a) else None} for q, e, a in rows if e is not None])
    if not len(table):
        return ""
    basis = estimate.get("basis") or estimate.get("source")
    return ("<h2>Estimate against actual</h2><p>What planning estimated this run folder would cost"
            + (f" ({html.escape(str(basis))})" if basis else "") + ", beside what its runs took.</p>"
            + table_html(table, "data estimate"))


def header_html(title: str, data: ReportData, topology: TopologyJson | None, scoped: bool,
                asked: str | None = None) -> str:
    """The top of the page: the title, what the run folder was asked for (phase, DAG run, samples,
    overrides), the gate's verdict, the host's topology, the notes."""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes(data, topology))
    request = f'<p class="request" id="request">{html.escape(asked)}</p>' if asked else ""
    return (f"<h1>{html.escape(title)}</h1>{request}{gate_html(data.gate, scoped)}{topology_html(topology)}"
            f"<ul class=\"notes\">{items}</ul>")


def prediction_html(check: pd.DataFrame | None) -> str:
    """The prediction check: each configuration predicted from the others, per regime."""
    if check is None or not len(check):
        return ""
    return ('<h2 id="prediction-check">Prediction check (each configuration predicted from the others)</h2><p>The laws '
            "of <code>./numa-lab predict</code> fitted without one measured configuration, then that configuration's "
            "samples/s predicted: the share inside its 95% prediction interval (near 95% when the intervals hold) and "
            "the median absolute error, per regime; see docs/prediction.md.</p>"
            + table_html(check, "data prediction", {"coverage of 95% intervals": _pct, "median abs error": _pct}))


def footer_html(data: ReportData, lanes: pd.DataFrame, penalties: pd.DataFrame, laws: pd.DataFrame,
                prediction: pd.DataFrame | None = None) -> str:
    """The tables below the charts: estimate against actual, lanes, penalties, laws, the prediction check, noise,
    crossover, failures."""
    out = estimate_against_actual_html(data.estimate, data.actual_time) + lanes_html(lanes) + paired_html(data.paired)
    if len(penalties):
        out += penalty_html(penalties, data.split)
    elif len(lanes) and (lanes["device"] == "cuda").any() and not len(data.paired):
        out += ("<h2>NUMA penalty</h2><p>No remote placement was measured in these runs (on a host with one "
                "NUMA node none exists), so no penalty is reported.</p>")
    return (
        out
        + laws_html(laws)
        + prediction_html(prediction)
        + noise_html(data.noise)
        + crossover_html(data.crossover)
        + failures_html(data.failures)
    )


VL_VERSION = "_".join(alt.SCHEMA_VERSION.split(".")[:2])  # the Vega-Lite Altair writes, as vl-convert names it


def chart_specs(charts: dict[str, alt.Chart]) -> dict[str, dict[str, Any]]:
    """Each chart's Vega-Lite spec, validated against the schema once (the page and the PNGs share it)."""
    return {name: chart.to_dict() for name, chart in charts.items()}


def write_pngs(specs: dict[str, dict[str, Any]], out_dir: Path, scale: float = 1.5) -> None:
    """One PNG per chart (``<name>.png``), rendered by vl-convert from its spec."""
    import vl_convert

    for name, spec in specs.items():
        (out_dir / f"{name}.png").write_bytes(vl_convert.vegalite_to_png(spec, vl_version=VL_VERSION, scale=scale))


def page_html(title: str, header: str, charts: dict[str, dict[str, Any]], footer: str) -> str:
    """The HTML page: Vega's bundle inlined once, then one SVG embed per chart spec (a chart that fails says
    why)."""
    from numa_ops.report.vega_bundle import javascript_bundle

    head = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{STYLE}"
    if not charts:
        return f"{head}</head><body>{header}<p>No successful runs to chart.</p>{footer}</body></html>"
    bundle = javascript_bundle(VL_VERSION)
    divs = "".join(f'<div class="chart" id="chart-{name}"></div>' for name in charts)
    specs = charts
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
