"""Render: ``best_practices.md``, the guide in words, from the same frames as the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from numa_ops.analysis import has_both as both
from numa_ops.analysis import host_memory
from numa_ops.report.read import ReportData


def verdict_text(penalty: Any, mde: Any, status: str) -> str:
    """A penalty as the product may quote it: the figure with its MDE when measured, else the verdict's words."""
    if status == "measured":
        return f"{penalty:.1%} (MDE {mde:.1%})"
    return status


def write_guide(out_dir: Path, data: ReportData, laws: pd.DataFrame, topology: dict[str, Any] | None) -> Path:
    """``best_practices.md``: the recommendations with their numbers, and what could not be measured here."""
    recs, pen, comp = data.recommendations, data.penalty, data.compile_speedup
    split, noise, cross = data.split, data.noise, data.crossover
    # Where both were measured, every answer names the host memory (and the placement mode) it is about.
    memories = {host_memory(v) for frame in (recs, pen, comp, cross, noise) if len(frame) and "pinned_memory" in frame
                for v in frame["pinned_memory"]}
    memories |= set(laws["host_memory"]) if len(laws) and "host_memory" in laws else set()
    name_memory = len(memories) > 1
    name_mode = len(pen) > 0 and both(pen["placement_mode"])

    def memory(pinned: Any) -> str:
        return f", {host_memory(pinned)} host memory" if name_memory else ""

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
                         f"process placement {verdict_text(r.process_penalty, r.process_mde, r.process_status)}; "
                         f"DMA part (pool placement) {verdict_text(r.dma_penalty, r.dma_mde, r.dma_status)}; "
                         f"CPU-side part {verdict_text(r.cpu_side_penalty, r.cpu_side_mde, r.cpu_side_status)}.")
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
