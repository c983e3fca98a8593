"""Nightly regression check: tonight's runs against a baseline night, configuration by configuration.

A configuration is a run spec without its folder (study, placement, model, test settings). A
change is a regression only when tonight's 95% confidence interval of samples/s lies wholly below
the baseline's (the two intervals do not overlap), an improvement when wholly above; otherwise the
two nights agree. The baseline is the last accepted night (one without a regression), or a pinned
run folder. ``check_night`` is the whole nightly step for one run folder: choose the baseline, compare,
store the verdicts and write ``regressions.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from numa_ops import regressions, results

REGRESSION, IMPROVEMENT, SAME, NEW, MISSING = "regression", "improvement", "same", "new", "missing"
INCONCLUSIVE = "inconclusive"  # a night without a confidence interval (a single trial) cannot be compared


def config_key(record: dict[str, Any]) -> str:
    """A stable key for a record's configuration, the same from night to night."""
    body = {k: record.get(k) for k in ("study", "lane", "gpu_id", "cpu_node", "mem_node", "model", "test", "sweep_point")}
    return hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def label(record: dict[str, Any]) -> str:
    """A readable name for a configuration."""
    t = record["test"]
    return (f"{record.get('study')} {record['lane']} {record['model']['name']} "
            f"{t['tensor_shape'][1]}px b{t['batch_size']} {t.get('execution', 'eager')}")


def _ci(record: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    ci = (record.get("metrics") or {}).get("samples_per_s_ci") or {}
    return ci.get("mean"), ci.get("low"), ci.get("high")


def compare(tonight: Path, baseline: Path | None) -> list[dict[str, Any]]:
    """One verdict per configuration of tonight's folder (and per baseline configuration gone missing)."""
    records = results.collect(tonight)  # once: a record written in between must not be in one dict and not the other
    now = {config_key(r): r for r in records if r.get("success")}
    failed = {config_key(r): r for r in records if not r.get("success")}
    base = {config_key(r): r for r in results.collect(baseline) if r.get("success")} if baseline else {}
    verdicts = []
    for key in sorted(set(now) | set(base) | set(failed)):
        rec, ref = now.get(key), base.get(key)
        t_mean, t_low, t_high = _ci(rec) if rec else (None, None, None)
        b_mean, b_low, b_high = _ci(ref) if ref else (None, None, None)
        if rec is None:
            verdict = MISSING if key not in failed else REGRESSION
        elif ref is None:
            verdict = NEW
        elif None in (t_low, t_high, b_low, b_high):
            verdict = INCONCLUSIVE
        elif t_high < b_low:
            verdict = REGRESSION
        elif t_low > b_high:
            verdict = IMPROVEMENT
        else:
            verdict = SAME
        source = rec or failed.get(key) or ref
        verdicts.append({
            "night": tonight.name,
            "baseline": baseline.name if baseline else None,
            "config_key": key,
            "config": label(source),
            "tonight_mean": t_mean, "tonight_low": t_low, "tonight_high": t_high,
            "baseline_mean": b_mean, "baseline_low": b_low, "baseline_high": b_high,
            "change": (t_mean / b_mean - 1) if t_mean and b_mean else None,
            "verdict": verdict,
            "error": (failed.get(key) or {}).get("error"),
        })
    return verdicts


def accepted(verdicts: list[dict[str, Any]]) -> bool:
    """A night is accepted (a baseline for later nights) when nothing regressed or went missing."""
    return not any(v["verdict"] in (REGRESSION, MISSING) for v in verdicts)


LAST_ACCEPTED = "last_accepted"


def baseline_name(folder_path: Path, key: str, baseline: str, host_queue: str | None = None) -> str | None:
    """The baseline night's folder: the last accepted night of ``key``, or the pinned folder (``<name>_<host>``
    on a GPU host); None when there is no accepted night yet."""
    if baseline == LAST_ACCEPTED:
        return regressions.last_accepted_night(key, before=folder_path.name)
    return f"{baseline}_{host_queue}" if host_queue else baseline


def check_night(folder_path: Path, key: str, baseline: str, host_queue: str | None = None) -> dict[str, Any]:
    """Compare tonight's folder with its baseline; store the verdicts under ``key`` and write regressions.json.

    ``key`` names the series of nights compared with each other (per GPU host: ``<dag_id>@<queue>``);
    ``baseline`` is ``last_accepted`` or a pinned run folder's name. Returns the verdicts, whether the
    night is accepted (``ok``), the baseline's name (None: this night becomes the baseline) and the problems.
    """
    base_name = baseline_name(folder_path, key, baseline, host_queue)
    verdicts = compare(folder_path, results.run_folder(base_name) if base_name else None)
    ok = accepted(verdicts)
    regressions.save_verdicts(key, verdicts, ok)
    results.write_json_atomic(folder_path / "regressions.json", verdicts)
    problems = []
    if not ok:
        bad = [v["config"] for v in verdicts if v["verdict"] in (REGRESSION, MISSING)]
        problems.append(f"regression against {base_name}: {', '.join(bad)}")
    return {"verdicts": verdicts, "ok": ok, "baseline": base_name, "problems": problems}
