"""A phase's gate: are its runs complete and tight enough for the phases after it to build on?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from numa_ops import results
from numa_ops.phases import Gate
from numa_ops.plan import distinct_runs


def check(folder_path: Path, gate: Gate) -> dict[str, Any]:
    """The verdict for a run folder: passed, a one-line summary, and each problem with its run and reason."""
    records = results.collect(folder_path)
    plan = json.loads((folder_path / "plan.json").read_text())
    specs = distinct_runs(plan["lanes"])
    planned = len(specs)
    by_id = {r["run_id"]: r for r in records}
    problems = []
    failed = 0
    for spec in specs:
        rec = by_id.get(spec["run_id"])
        if rec is None:
            failed += 1
            problems.append(f"{spec['run_id']}: no record (never ran)")
        elif not rec.get("success"):
            failed += 1
            problems.append(f"{spec['run_id']}: failed: {rec.get('error')}")
        else:
            width = ((rec.get("metrics") or {}).get("samples_per_s_ci") or {}).get("rel_half_width")
            if width is not None and width > gate.max_ci_half_width:
                problems.append(
                    f"{spec['run_id']}: 95% CI half-width {width:.1%} of samples/s > {gate.max_ci_half_width:.0%}"
                )
    rate = failed / planned if planned else 1.0
    noisy = len(problems) - failed
    passed = rate <= gate.max_failure_rate and noisy == 0
    summary = (
        f"gate {'passed' if passed else 'FAILED'}: {failed}/{planned} runs failed "
        f"({rate:.0%}, allowed {gate.max_failure_rate:.0%}); {noisy} run(s) with a CI wider than "
        f"{gate.max_ci_half_width:.0%}"
    )
    verdict = {"passed": passed, "summary": summary, "problems": problems, "failure_rate": rate, "planned": planned}
    results.write_json_atomic(folder_path / "gate.json", verdict)
    return verdict
