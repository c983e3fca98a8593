"""Render: ``best_practices.md``, the guide in words, from the same frames as the page."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from numa_ops import labels
from numa_ops.analysis import has_both as both
from numa_ops.labels import host_memory
from numa_ops.report.format import paired_configuration, reason_text
from numa_ops.report.read import ReportData
from numa_ops.topology import TopologyJson


def verdict_text(penalty: Any, mde: Any, status: str) -> str:
    """A penalty as the product may quote it: the figure with its MDE when measured, else the verdict's words."""
    if status == "measured":
        return f"{penalty:.1%} (MDE {mde:.1%})"
    return status


@dataclass(frozen=True)
class _Naming:
    """Where both were measured, every answer names the host memory (and the placement mode) it is about."""

    name_memory: bool
    name_mode: bool

    def memory(self, pinned: Any) -> str:
        return labels.memory_words(pinned, always=self.name_memory)

    def settings(self, r: Any, image: str = "height") -> str:
        """A row's shape and host memory (:func:`numa_ops.labels.settings`)."""
        return labels.settings(r.execution, getattr(r, image), r.batch_size, r.pinned_memory,
                               name_memory=self.name_memory)

    def mode(self, placement_mode: str) -> str:
        return f", {placement_mode} placement" if self.name_mode else ""


def _naming(data: ReportData, laws: pd.DataFrame) -> _Naming:
    frames = (data.recommendations, data.penalty, data.compile_speedup, data.crossover, data.noise)
    memories = {
        host_memory(v) for frame in frames if len(frame) and "pinned_memory" in frame for v in frame["pinned_memory"]
    }
    memories |= set(laws["host_memory"]) if len(laws) and "host_memory" in laws else set()
    return _Naming(len(memories) > 1, len(data.penalty) > 0 and both(data.penalty["placement_mode"]))


def _fastest(recs: pd.DataFrame, n: _Naming) -> list[str]:
    return ["## Fastest settings per model and image size", ""] + [
        f"- **{r.model_name}** ({n.settings(r)}): lane `{r.best_lane}` ({r.placement}): {r.samples_per_s:.0f} "
        f"samples/s (median of {r.evidence_runs} run(s))."
        for r in recs.itertuples()
    ]


def _placement(pen: pd.DataFrame, n: _Naming, any_paired: bool = False) -> list[str]:
    paired = pen[pen["throughput_penalty"].notna()] if len(pen) else pen
    if len(paired):
        return ["", "## NUMA placement", "", *_guide_penalties(paired, n.memory, n.name_mode)]
    if any_paired:
        return ["", "## NUMA placement", "",
                "- Between separate worker processes: no remote placement was run; the paired penalties above compare "
                "the arms inside one process."]
    return ["", "## NUMA placement", "",
            "- Not measurable here: no remote placement was run (a host with one NUMA node has none). "
            "The penalty, its confidence interval and the pairing advice need a multi-node host."]


def _split(split: pd.DataFrame, n: _Naming) -> list[str]:
    if not len(split):
        return []
    return ["", "## NUMA penalty split (DMA part and CPU-side part)", ""] + [
        f"- {r.model_name} ({n.settings(r)}): "
        f"process placement {verdict_text(r.process_penalty, r.process_mde, r.process_status)}; "
        f"DMA part (pool placement) {verdict_text(r.dma_penalty, r.dma_mde, r.dma_status)}; "
        f"CPU-side part {verdict_text(r.cpu_side_penalty, r.cpu_side_mde, r.cpu_side_status)}."
        for r in split.itertuples()]


def _paired(paired: pd.DataFrame) -> list[str]:
    """One line per paired comparison: which part of a penalty it measures, the penalty with its interval (the
    control-adjusted one beside it for memory arms) where the interval excludes 0, else the verdict; and its cost."""
    if not len(paired):
        return []
    lines = ["", "## Paired NUMA penalties (arms alternated trial by trial in one worker process)", ""]
    for config, r in zip(paired_configuration(paired), paired.itertuples(), strict=True):
        ci = f"95% CI {r.penalty_low:.1%} to {r.penalty_high:.1%}" if pd.notna(r.penalty_low) else "no interval"
        if pd.notna(r.adjusted_penalty):
            ci += (f"; control-adjusted {r.adjusted_penalty:.1%}, {r.adjusted_penalty_low:.1%} to "
                   f"{r.adjusted_penalty_high:.1%}")
        cost = f"{r.blocks} ABBA blocks, {r.gpu_seconds:.0f} GPU seconds, stopped on {r.stop_reason}"
        what = f"{config}, {r.part} ({r.arm_name} vs {r.reference_name})"
        if r.verdict == "measured":
            lines.append(f"- {what}: the arm costs {r.penalty:.1%} of samples/s ({ci}; MDE {r.mde:.1%}; {cost}).")
        else:
            lines.append(f"- {what}: {r.verdict} ({ci}; {cost}).")
    return lines


def _noise(noise: pd.DataFrame, n: _Naming) -> list[str]:
    spread = noise[noise["processes"] >= 2] if len(noise) else noise
    if not len(spread):
        return []
    return ["", "## Noise between worker processes (what a comparison here can detect)", ""] + [
        f"- {r.model_name} ({n.settings(r)}{n.mode(r.placement_mode)}, {r.placement}): between-process CV "
        f"{r.between_process_cv:.1%} over {r.processes} "
        f"processes; a comparison with {r.processes} processes a side detects {r.aa_mde:.1%} (A/A MDE)."
        for r in spread.itertuples()]


def _crossover_line(r: Any, n: _Naming) -> str:
    where = n.settings(r)
    if pd.isna(r.crossover_flops_per_sample):
        return (f"- {where}: no measured model's GPU compute outlasts its copies (largest: "
                f"{r.last_transfer_dominated_model}); copy placement and pinned memory matter for all of them.")
    est = (
        ""
        if pd.isna(r.crossover_flops_estimate)
        else f"; interpolated crossover {r.crossover_flops_estimate:.3g} FLOPs/sample"
    )
    below = ("smaller models are transfer-dominated." if isinstance(r.last_transfer_dominated_model, str) else
             f"that is the smallest of the {r.models} models measured, so the crossover lies below it: "
             "measure smaller models (or larger images) to find it.")
    return (
        f"- {where}: GPU compute outlasts the H2D + D2H copies from **{r.first_compute_dominated_model}** on "
        f"({r.crossover_flops_per_sample:.3g} FLOPs/sample, {r.crossover_parameters:.3g} parameters{est}); " + below
    )


def _crossovers(cross: pd.DataFrame, n: _Naming) -> list[str]:
    if not len(cross):
        return []
    return ["", "## Compute vs copies (crossover)", ""] + [_crossover_line(r, n) for r in cross.itertuples()]


def _laws(laws: pd.DataFrame, n: _Naming) -> list[str]:
    if not len(laws):
        return []
    return ["", "## Scaling laws (time per sample vs parameters)", ""] + [
        f"- {r.experiment} {r.study} ({labels.shape(r.execution, r.image, r.batch)}"
        f"{labels.memory_words(getattr(r, 'host_memory', None) != labels.PAGEABLE, always=n.name_memory)}, "
        f"{r.models} models): {r.law}, R^2 {r.R2:.3f}: "
        f"{r.regime}."
        for r in laws.itertuples()
    ]


def _compile(comp: pd.DataFrame, n: _Naming) -> list[str]:
    if not len(comp):
        return []
    lines = ["", "## torch.compile", ""]
    for r in comp.itertuples():
        pays = pd.notna(r.break_even_samples) and r.break_even_samples
        after = f"pays off after {r.break_even_samples:.0f} samples" if pays else "never pays off in steady state"
        lines.append(
            f"- {r.model_name} `{r.execution}`{n.memory(r.pinned_memory)}: {r.forward_speedup:.2f}x forward speed-up; "
            f"{after}."
        )
    return lines


def _failures(failed: pd.DataFrame) -> list[str]:
    """Every failed run and its reason as recorded, line for line (a code block: nothing in it is markup)."""
    if not len(failed):
        return []
    lines = ["", "## Failed runs", ""]
    for r in failed.itertuples():
        reason = reason_text(r.error)
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", reason)), default=0))
        lines += [f"- `{r.run_id}` (lane `{r.lane}`, model {r.model_name}):", "",
                  f"    {fence}text", *(f"    {line}" for line in reason.splitlines() or [""]), f"    {fence}"]
    return lines


def write_guide(out_dir: Path, data: ReportData, laws: pd.DataFrame, topology: TopologyJson | None) -> Path:
    """``best_practices.md``: the recommendations with their numbers, and what could not be measured here."""
    n = _naming(data, laws)
    lines = ["# Best practices from the measured runs", ""]
    if topology:
        lines += [f"Host `{topology.get('host')}`: {len(topology.get('nodes', []))} NUMA node(s), "
                  f"{len(topology.get('gpus', []))} GPU(s).", ""]
    lines += (
        _fastest(data.recommendations, n)
        + _paired(data.paired)
        + _placement(data.penalty, n, len(data.paired) > 0)
        + _split(data.split, n)
        + _noise(data.noise, n)
        + _crossovers(data.crossover, n)
        + _laws(laws, n)
        + _compile(data.compile_speedup, n)
        + _failures(data.failures)
    )
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
        shape = labels.shape(r.execution, r.height, r.batch_size)
        what = f"{r.model_name} ({shape}{memory(r.pinned_memory)}{mode}, {r.regime})"
        sides = f"{r.local_processes} local and {r.remote_processes} remote processes"
        if r.status == "measured":
            cost = (f"remote placement costs {r.throughput_penalty:.1%} of samples/s" if r.throughput_penalty >= 0
                    else f"remote placement is {-r.throughput_penalty:.1%} faster")
            lines.append(
                f"- {what}: {cost} (95% CI {r.penalty_low:.1%} to {r.penalty_high:.1%}, MDE {r.mde:.1%}; {sides})."
            )
        elif pd.notna(r.mde):
            lines.append(f"- {what}: {r.status}; more processes a side (test.repeats) lower the MDE ({sides}).")
        else:
            lines.append(f"- {what}: {r.status}.")
    return lines
