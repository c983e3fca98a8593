"""A phase's gate: are its runs complete and tight enough for the phases after it to build on?

A run is too noisy when the 95% interval of its median samples/s (over its trials) is wider than
the phase's ``max_ci_half_width``, or when it has too few trials for a 95% interval at all. The
verdict ends in one plain ``sentence``: which runs, what was measured against what threshold, and
what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from numa_ops import results
from numa_ops.phases import Gate

LEVEL = 0.95


def _label(rec: dict[str, Any], run_id: str) -> str:
    """A run as the sentence names it: its model on its lane."""
    model = (rec.get("model") or {}).get("name") or run_id
    return f"{model} on {rec.get('lane') or '?'}"


def _noise_problem(run_id: str, rec: dict[str, Any], gate: Gate) -> tuple[str, str] | None:
    """(problem line, short phrase for the sentence) if the run's interval is too wide or too weak."""
    metrics = rec.get("metrics") or {}
    ci = metrics.get("samples_per_s_ci") or {}
    width, level, trials = ci.get("rel_half_width"), ci.get("level"), metrics.get("trials") or ci.get("n")
    if width is not None and width > gate.max_ci_half_width:
        why = ""
        if metrics.get("binding_stage") == "cpu_issue":
            control = metrics.get("cpu_control") or {}
            lo, hi, med = control.get("low"), control.get("high"), control.get("median")
            spread = f" (its CPU-speed control ranged {lo / med - 1:+.0%} to {hi / med - 1:+.0%})" if lo and hi and med else ""
            why = f", launch-bound: its rate follows the launching CPU's speed{spread}"
        line = f"{run_id}: 95% CI half-width {width:.1%} of samples/s > {gate.max_ci_half_width:.0%}"
        return line, f"{_label(rec, run_id)} measured ±{width:.1%} over {trials} trials{why}"
    if "level" in ci and (level is None or level < LEVEL):  # records before intervals said their level lack it
        covers = "no interval at all" if level is None else f"an interval that covers {level:.0%}, not 95%"
        line = f"{run_id}: only {trials} trial(s): {covers} (the time budget ran out)"
        return line, f"{_label(rec, run_id)} had only {trials} trial(s) before its time budget ran out"
    return None


def _sentence(passed: bool, failed: list[str], noisy: list[str], planned: int, gate: Gate) -> str:
    """The verdict in one sentence: which runs failed or were too noisy, and what to do."""
    if passed:
        return f"gate passed: {planned} run(s), every 95% interval within ±{gate.max_ci_half_width:.0%}."
    parts = []
    if failed:
        parts.append(f"{len(failed)} of {planned} run(s) failed or never ran ({failed[0]}"
                     + (f" and {len(failed) - 1} more" if len(failed) > 1 else "") + "; see results.json for each reason)")
    if noisy:
        parts.append(f"{len(noisy)} run(s) not measured tightly enough for the ±{gate.max_ci_half_width:.0%} limit ({noisy[0]}"
                     + (f"; and {len(noisy) - 1} more" if len(noisy) > 1 else "") + ")")
    todo = ("rerun the phase with folder=<its run folder> to measure again only what failed"
            if failed and not noisy else
            "rerun on a quieter host, or give each trial more time or more trials "
            "(experiment.test.min_trial_s, experiment.test.max_trials, experiment.test.max_trial_time_s)")
    return f"gate FAILED: {'; '.join(parts)}. To do: {todo}."


def judge_run_folder(folder_path: Path, gate: Gate) -> dict[str, Any]:
    """Judge a run folder's runs against ``gate`` and write the verdict to its ``gate.json``.

    The verdict: passed, a one-line summary, each problem with its run and reason, the failure rate, how
    many runs were planned, and one plain sentence saying what failed and what to do."""
    plan = json.loads((folder_path / "plan.json").read_text())
    # each run once: a shared run (hardware.spread) is offered to several lanes
    run_ids = list(dict.fromkeys(run["run_id"] for lane in plan["lanes"] for run in lane["runs"]))
    planned = len(run_ids)
    record_of = {rec["run_id"]: rec for rec in results.collect(folder_path)}
    problems: list[str] = []
    failed_runs: list[str] = []
    noisy_runs: list[str] = []
    for run_id in run_ids:
        rec = record_of.get(run_id)
        if rec is None:
            failed_runs.append(f"{run_id} never ran")
            problems.append(f"{run_id}: no record (never ran)")
        elif not rec.get("success"):
            failed_runs.append(f"{_label(rec, run_id)} failed: {str(rec.get('error'))[:200]}")
            problems.append(f"{run_id}: failed: {rec.get('error')}")
        else:
            noise = _noise_problem(run_id, rec, gate)
            if noise:
                problems.append(noise[0])
                noisy_runs.append(noise[1])
    failed = len(failed_runs)
    rate = failed / planned if planned else 1.0
    noisy = len(noisy_runs)
    passed = rate <= gate.max_failure_rate and noisy == 0
    summary = (
        f"gate {'passed' if passed else 'FAILED'}: {failed}/{planned} runs failed "
        f"({rate:.0%}, allowed {gate.max_failure_rate:.0%}); {noisy} run(s) with a CI wider than "
        f"{gate.max_ci_half_width:.0%}"
    )
    verdict = {"passed": passed, "summary": summary, "problems": problems, "failure_rate": rate, "planned": planned,
               "sentence": _sentence(passed, failed_runs, noisy_runs, planned, gate)}
    results.write_json_atomic(folder_path / "gate.json", verdict)
    return verdict
