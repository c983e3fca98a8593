"""A phase's gate: did its runs complete, and can its comparisons see the effect the phase asks about?

It fails on failed or missing runs (beyond the phase's ``max_failure_rate``), on a failed step of the DAG run
(loading or reporting), and on comparisons whose minimum detectable effect exceeds the phase's ``max_mde``
(absent: no MDE check). The comparisons are the paired ones in the records (``metrics.paired.comparisons``) and,
in a placement study with 2 or more worker processes a side, local against remote between processes, per
configuration. A run's own interval over its trials is shown, never judged: it says nothing of the noise
between processes, which is what every comparison stands on. The verdict ends in one plain ``sentence``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict

from pydantic import BaseModel, ConfigDict

from numa_ops import analysis, compare, results
from numa_ops.phases import Gate
from numa_ops.record import RunRecord
from numa_ops.roles import SkippedStudy, SkippedStudyJson

PLACEMENT_FIELDS = ("placement", "cpu_node", "mem_node", "pool_node")


class GateComparisonJson(TypedDict):
    configuration: str
    mde: float | None
    basis: str


class GateVerdictJson(TypedDict):
    """A :class:`GateVerdict` as ``gate.json`` and the gate task's XCom hold it."""

    passed: bool
    summary: str
    problems: list[str]
    failure_rate: float
    planned: int
    comparisons: list[GateComparisonJson]
    intervals: list[str]
    skipped_studies: list[SkippedStudyJson]
    sentence: str


class GateResultJson(TypedDict):
    """The gate task's XCom: each run folder's verdict by folder name (one host: one folder); ``passed`` as every
    one passed (else the task failed)."""

    passed: bool
    folders: dict[str, GateVerdictJson]


class GateComparison(BaseModel):
    """A comparison the gate judges: which configuration (and arms), its MDE, and what it stands on."""

    model_config = ConfigDict(frozen=True)

    configuration: str
    mde: float | None
    basis: str


class GateVerdict(BaseModel):
    """A run folder's gate verdict (``gate.json``): parsed with :meth:`from_json`, written with :meth:`to_json`.

    An older ``gate.json`` without some keys reads with their defaults."""

    model_config = ConfigDict(frozen=True)

    passed: bool = False
    summary: str = ""
    problems: tuple[str, ...] = ()
    failure_rate: float = 0.0
    planned: int = 0
    comparisons: tuple[GateComparison, ...] = ()
    intervals: tuple[str, ...] = ()
    skipped_studies: tuple[SkippedStudy, ...] = ()
    sentence: str = ""

    def to_json(self) -> GateVerdictJson:
        return GateVerdictJson(**self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, data: GateVerdictJson) -> GateVerdict:
        return cls.model_validate(data)

    def said(self) -> str:
        """The verdict in its own words: its sentence, else its summary, else passed or FAILED."""
        return self.sentence or self.summary or ("passed" if self.passed else "FAILED")


def _label(rec: RunRecord, run_id: str) -> str:
    """A run as the sentence names it: its model on its lane."""
    model = (rec.model.name if rec.model else None) or run_id
    return f"{model} on {rec.lane or '?'}"


def _interval(run_id: str, rec: RunRecord) -> str | None:
    """A run's own interval over its trials, in words (shown with the verdict, not judged)."""
    ci = rec.metrics.samples_per_s_ci if rec.metrics else None
    if ci is None:
        return None
    trials = (rec.metrics.trials if rec.metrics else None) or ci.n
    if ci.rel_half_width is None:
        return f"{run_id}: no interval over its trials ({trials or '?'} trial(s))"
    return f"{run_id}: ±{ci.rel_half_width:.1%} over {trials or '?'} trials (its own trials)"


def comparisons(records: list[RunRecord]) -> list[GateComparison]:
    """Every comparison the records hold, with its MDE: paired arm comparisons, and local against remote between
    worker processes where a configuration has 2 or more successful processes at each placement."""
    found = []
    sides: dict[str, dict[str, list[float]]] = {}
    names: dict[str, str] = {}
    for rec in records:
        if not rec.success or rec.metrics is None:
            continue
        paired = rec.metrics.paired
        if paired:
            for comp in paired.comparisons:
                arm, vs = compare.arm_name(paired.arms, comp.arm), compare.arm_name(paired.arms, comp.vs)
                found.append(GateComparison(configuration=f"{compare.label(rec)} [{arm} vs {vs}]", mde=comp.mde,
                                            basis=f"paired {paired.kind or 'memory'}, {comp.blocks or '?'} blocks"))
            continue
        rate = rec.samples_per_s
        if rec.placement not in ("local", "remote") or rate is None or rate <= 0:
            continue
        body = {k: v for k, v in compare.settings(rec).items() if k not in PLACEMENT_FIELDS}
        key = json.dumps(body, sort_keys=True, default=str)
        sides.setdefault(key, {}).setdefault(rec.placement, []).append(float(rate))
        names.setdefault(key, compare.label(rec, placement="local v remote"))
    for key, side in sorted(sides.items()):
        local, remote = side.get("local", []), side.get("remote", [])
        penalty = analysis.process_penalty(local, remote)
        if penalty is not None:
            found.append(GateComparison(configuration=names[key], mde=penalty.mde,
                                        basis=f"between processes, {len(local)} local v {len(remote)} remote"))
    return found


def _more(items: list[str], sep: str = "; ") -> str:
    return items[0] + (f"{sep}and {len(items) - 1} more" if len(items) > 1 else "")


def _sentence(passed: bool, failed: list[str], steps: list[str], wide: list[str], planned: int,
              compared: int, gate: Gate) -> str:
    """The verdict in one sentence: what failed, and what to do."""
    if passed:
        checked = (
            f", {compared} comparison(s) with an MDE within {gate.max_mde:.0%}"
            if gate.max_mde is not None and compared
            else ""
        )
        return f"gate passed: {planned - len(failed)} of {planned} run(s) measured{checked}."
    parts, todo = [], []
    if steps:
        parts.append(f"{_more(steps, ', ')} failed")
        todo.append("read the failed task's log")
    if failed:
        parts.append(
            f"{len(failed)} of {planned} run(s) failed or never ran ({_more(failed)}; see results.json for each reason)"
        )
        todo.append("rerun the phase with folder=<its run folder> to measure again only what failed")
    if wide:
        parts.append(f"{len(wide)} comparison(s) cannot see a {gate.max_mde:.0%} effect ({_more(wide)})")
        todo.append("measure the placements paired in one worker (experiment.hardware.placement=paired) or with "
                    "more worker processes (experiment.test.repeats)")
    return f"gate FAILED: {'; '.join(parts)}. To do: {'; '.join(todo)}."


def judge_run_folder(folder_path: Path, gate: Gate, failed_steps: list[str] | tuple[str, ...] = ()) -> GateVerdict:
    """Judge a run folder's runs against ``gate`` and write the verdict to its ``gate.json``.

    ``failed_steps``: the DAG run's tasks after measuring that failed (their names). The verdict: passed, a
    one-line summary, each problem, the failure rate, how many runs were planned, the comparisons with their MDE,
    each run's own interval (shown, not judged), and one plain sentence saying what failed and what to do."""
    plan = json.loads((folder_path / "plan.json").read_text())
    # each run once: a shared run (hardware.spread) is offered to several lanes
    run_ids = list(dict.fromkeys(run["run_id"] for lane in plan["lanes"] for run in lane["runs"]))
    planned = len(run_ids)
    records = results.collect(folder_path)
    record_of = {rec.run_id: rec for rec in records}
    problems: list[str] = [f"{step}: the task failed" for step in failed_steps]
    failed_runs: list[str] = []
    intervals: list[str] = []
    for run_id in run_ids:
        rec = record_of.get(run_id)
        if rec is None:
            failed_runs.append(f"{run_id} never ran")
            problems.append(f"{run_id}: no record (never ran)")
        elif not rec.success:
            failed_runs.append(f"{_label(rec, run_id)} failed: {str(rec.error)[:200]}")
            problems.append(f"{run_id}: failed: {rec.error}")
        elif (line := _interval(run_id, rec)) is not None:
            intervals.append(line)
    planned_ids = set(run_ids)
    compared = comparisons([r for r in records if r.run_id in planned_ids])
    wide = []
    for comp in compared:
        mde = comp.mde
        if gate.max_mde is not None and (mde is None or mde > gate.max_mde):
            said = "no MDE" if mde is None else f"MDE {mde:.1%}"
            wide.append(f"{comp.configuration}: {said}")
            problems.append(f"{comp.configuration}: {said} > {gate.max_mde:.0%} ({comp.basis})")
    rate = len(failed_runs) / planned if planned else 1.0
    passed = rate <= gate.max_failure_rate and not wide and not failed_steps
    mde_part = (f"{len(wide)} of {len(compared)} comparison(s) with an MDE above {gate.max_mde:.0%}"
                if gate.max_mde is not None else f"{len(compared)} comparison(s), no MDE limit")
    summary = (
        f"gate {'passed' if passed else 'FAILED'}: {len(failed_runs)}/{planned} runs failed "
        f"({rate:.0%}, allowed {gate.max_failure_rate:.0%}); {mde_part}"
        + (f"; failed step(s): {', '.join(failed_steps)}" if failed_steps else "")
    )
    skipped = results.skipped_studies(folder_path)
    sentence = _sentence(passed, failed_runs, list(failed_steps), wide, planned, len(compared), gate)
    if skipped:  # what this host could not run, and why, in the same sentence
        sentence = sentence.rstrip(".") + "; not run on this host: " + "; ".join(
            f"{s.study} ({s.reason})" for s in skipped) + "."
    verdict = GateVerdict(passed=passed, summary=summary, problems=tuple(problems), failure_rate=rate, planned=planned,
                          comparisons=tuple(compared), intervals=tuple(intervals), skipped_studies=tuple(skipped),
                          sentence=sentence)
    results.write_json_atomic(folder_path / "gate.json", verdict.to_json())
    return verdict
