"""Two sets of run folders compared configuration by configuration: candidate against baseline.

The unit is the worker process. Per configuration (model, image size, batch, execution, host memory, d2h_mode,
placement and every other test setting) the ratio of the geometric means of samples/s, candidate / baseline, with
the two-sample t interval of the difference of mean ln samples/s over processes (at least 2 a side; one spread
pooled over both sides, ``df = n_b + n_c - 2``: the same configuration on the same host. Welch's df falls to about
1 with 2 processes a side whenever one side's pair happens to agree, and its corrected t quantile, near 100, would
hide a 10% slowdown on the quietest configuration a third of the time), and its minimum detectable effect (MDE,
80% power). A paired run (``metrics.paired``) adds one row per arm comparison: the ratio of its arm ratio tonight to
the baseline's, from the paired estimates (Welch over their blocks with one paired process a side, over the
processes' estimates with several).

Every interval is Bonferroni-corrected over the rows that have one, so that with no change anywhere the chance
that any row says "regression" or "improvement" is at most 5% (``LEVEL``). One verdict per row:

- ``no change``: the interval lies inside ``1 ± tolerance`` (equivalence shown);
- ``regression``: the interval lies wholly below 1 (and not inside the tolerance);
- ``improvement``: wholly above 1;
- ``not detectable``: the interval holds 1 and reaches beyond the tolerance (the MDE says what could be seen).

Processes of one night share that night's host state, so this is the noise between processes of a night; a shift
common to all of one night's processes is a change of the night. Configurations on one side only are ``missing``
(baseline only) or ``new`` (candidate only). ``numa_ops.nightly`` and ``./numa-lab compare`` both use this.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TypedDict, cast

import numpy as np
from pydantic import BaseModel, JsonValue
from scipy import stats

from numa_ops import labels, results
from numa_ops.labels import host_memory
from numa_ops.record import PairedArm, RunRecord

Given = dict[str, JsonValue]  # a recorded model's or test's settings, as the record holds them (``_given``)


class Settings(TypedDict):
    """A configuration's settings (:func:`settings`): what it measured and where, as JSON."""

    model: Given
    image: list[int | None]
    batch: int | None
    execution: str
    host_memory: str  # pinned | pageable
    d2h_mode: str | None
    placement: str | None
    placement_mode: str
    device: str | None
    gpu_id: int | None
    cpu_node: int | None
    mem_node: int | None
    pool_node: int | None
    test: Given  # the test settings that define a configuration (not repeats, not timeout_s), sorted

REGRESSION, IMPROVEMENT, NO_CHANGE, NOT_DETECTABLE = "regression", "improvement", "no change", "not detectable"
MISSING, NEW = "missing", "new"
LEVEL = 0.95  # family-wise confidence of all the intervals of one comparison together
POWER = 0.80  # power at which the MDE is stated
TOLERANCE = 0.02  # default: a change within ±2% is no change
# test settings that do not define a configuration: how many processes measure it, how long one may take
NOT_SETTINGS = frozenset({"repeats", "timeout_s"})
ONE_PROCESS = "fewer than 2 processes a side: no between-process interval (set test.repeats >= 2)"


class ComparisonJson(TypedDict):
    """A :class:`Comparison` as JSON (``./numa-lab compare --json``)."""

    configuration: str
    key: str
    settings: Settings
    verdict: str
    ratio: float | None
    low: float | None
    high: float | None
    mde: float | None
    df: float | None
    level: float | None
    family: int | None
    basis: str | None
    baseline_n: int
    candidate_n: int
    baseline_mean: float | None
    candidate_mean: float | None
    note: str | None
    failed: list[str]


@dataclass(frozen=True)
class Comparison:
    """One configuration compared: ``ratio`` = candidate / baseline, ``low``/``high`` its interval at ``level``
    (Bonferroni over ``family`` rows), ``mde`` the relative slowdown found with 80% power at that level."""

    configuration: str
    key: str
    settings: Settings
    verdict: str
    ratio: float | None = None
    low: float | None = None
    high: float | None = None
    mde: float | None = None
    df: float | None = None
    level: float | None = None
    family: int | None = None
    basis: str | None = None
    baseline_n: int = 0
    candidate_n: int = 0
    baseline_mean: float | None = None
    candidate_mean: float | None = None
    note: str | None = None
    failed: list[str] = field(default_factory=list)

    def to_json(self) -> ComparisonJson:
        return cast(ComparisonJson, asdict(self))


@dataclass(frozen=True)
class _Sample:
    """What one side holds for a row: the unit values (ln samples/s or ln arm ratios) and, for a single paired
    process, its block differences."""

    values: list[float]
    blocks: list[float] | None = None


def _given(part: BaseModel | None) -> Given:
    """A recorded model's or test's settings as the record holds them (only the keys it has)."""
    return part.model_dump(mode="json", exclude_unset=True) if part is not None else {}


def settings(rec: RunRecord) -> Settings:
    """The configuration of a record: what it measured and where, nothing of which process or night it was."""
    recorded = _given(rec.test)
    test = {k: v for k, v in sorted(recorded.items()) if k not in NOT_SETTINGS}
    mode = rec.placement_mode or "process"
    shape = test.get("tensor_shape") or [None, None, None]
    metrics = rec.metrics
    pinned = metrics.pool_pinned if metrics else None
    if pinned is None:
        pinned = recorded.get("pinned_memory", True)
    return {
        "model": _given(rec.model), "image": shape[1:], "batch": test.get("batch_size"),
        "execution": (metrics.execution if metrics else None) or recorded.get("execution") or "eager",
        "host_memory": host_memory(pinned),
        "d2h_mode": (metrics.d2h_mode if metrics else None) or test.get("d2h_mode"),
        "placement": rec.placement, "placement_mode": mode,
        "device": rec.device, "gpu_id": rec.gpu_id, "cpu_node": rec.cpu_node, "mem_node": rec.mem_node,
        # its own node only in pool placement (elsewhere the memory node, which older records left out)
        "pool_node": rec.pool_node if mode == "pool" else None, "test": test,
    }


def config_key(rec: RunRecord, extra: str = "") -> str:
    """A stable key of a record's configuration (``settings``), the same from night to night and folder to folder."""
    body = json.dumps(settings(rec), sort_keys=True, default=str) + extra
    return hashlib.sha1(body.encode()).hexdigest()[:16]


def label(rec: RunRecord, placement: str | None = None) -> str:
    """A readable name of a configuration (:func:`numa_ops.labels.configuration`, its host memory named), its D2H
    mode, placement (``placement`` in its stead where given) and device:
    ``small (eager, 224x224 px, batch 8, pinned host memory), d2h outputs, local (process), gpu0``."""
    s = settings(rec)
    image = "x".join(str(v) for v in s["image"]) if s["image"] and s["image"][0] is not None else "?"
    where = f"gpu{s['gpu_id']}" if s["gpu_id"] is not None else str(s["device"])
    d2h = f", d2h {s['d2h_mode']}" if s["d2h_mode"] else ""
    config = labels.configuration(s["model"].get("name"), s["execution"], image, s["batch"],
                                  s["host_memory"] != labels.PAGEABLE, name_memory=True)
    return f"{config}{d2h}, {placement or s['placement']} ({s['placement_mode']}), {where}"


def _log_rate(rec: RunRecord) -> float | None:
    rate = rec.samples_per_s
    return math.log(rate) if rate is not None and rate > 0 and math.isfinite(rate) else None


def arm_name(arms: list[PairedArm], index: int | None) -> str:
    """An arm of a paired run by its name (``arm<i>`` where the record names none)."""
    arm = arms[index] if index is not None and 0 <= index < len(arms) else None
    return str((arm.name if arm else None) or f"arm{index}")


def _paired_rows(rec: RunRecord) -> list[tuple[str, str, float, list[float]]]:
    """(key, label, estimate, block diffs) per arm comparison of a paired record."""
    paired = rec.metrics.paired if rec.metrics else None
    if paired is None:
        return []
    out = []
    for comp in paired.comparisons:
        diffs = [float(d) for d in comp.block_diffs if d is not None and math.isfinite(d)]
        estimate = comp.estimate
        if estimate is None and diffs:
            estimate = float(np.mean(diffs))
        if estimate is None or not math.isfinite(estimate):
            continue
        what = (f"{arm_name(paired.arms, comp.arm)} vs {arm_name(paired.arms, comp.vs)}, "
                f"paired {paired.kind or 'memory'}")
        out.append((config_key(rec, what), f"{label(rec)} [{what}]", float(estimate), diffs))
    return out


@dataclass
class _Side:
    """One side's records grouped by row key."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    blocks: dict[str, list[list[float]]] = field(default_factory=dict)
    example: dict[str, RunRecord] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    paired: set[str] = field(default_factory=set)
    failed: dict[str, list[str]] = field(default_factory=dict)


def _group(records: list[RunRecord]) -> _Side:
    side = _Side()
    for rec in records:
        key = config_key(rec)
        side.example.setdefault(key, rec)
        side.labels.setdefault(key, label(rec))
        if not rec.success:
            side.failed.setdefault(key, []).append(f"{rec.run_id}: {str(rec.error)[:200]}")
            continue
        value = _log_rate(rec)
        if value is not None:
            side.samples.setdefault(key, []).append(value)
        for pkey, plabel, estimate, diffs in _paired_rows(rec):
            side.example.setdefault(pkey, rec)
            side.labels.setdefault(pkey, plabel)
            side.paired.add(pkey)
            side.samples.setdefault(pkey, []).append(estimate)
            side.blocks.setdefault(pkey, []).append(diffs)
    return side


def _units(base: _Side, cand: _Side, key: str) -> tuple[list[float], list[float], str]:
    """The values a row's interval is over, each side's, and what they are: processes, or for a paired row with
    one paired process a side, their blocks."""
    b, c = sorted(base.samples.get(key, [])), sorted(cand.samples.get(key, []))
    if key in base.paired and key in cand.paired and len(b) == len(c) == 1:
        return (
            sorted(base.blocks[key][0]),
            sorted(cand.blocks[key][0]),
            "paired estimates: blocks of one paired process",
        )
    return b, c, "paired estimates: processes" if key in base.paired | cand.paired else "between processes"


def pooled(baseline: list[float], candidate: list[float]) -> tuple[float, float, float] | None:
    """``(difference of means, its standard error, df)`` of the two-sample t with one pooled spread, candidate -
    baseline, ``df = n_b + n_c - 2``; None with fewer than 2 values a side."""
    if len(baseline) < 2 or len(candidate) < 2:
        return None
    b, c = np.asarray(baseline, float), np.asarray(candidate, float)
    df = len(b) + len(c) - 2
    var = ((len(b) - 1) * float(np.var(b, ddof=1)) + (len(c) - 1) * float(np.var(c, ddof=1))) / df
    return float(c.mean() - b.mean()), math.sqrt(var * (1 / len(b) + 1 / len(c))), float(df)


def welch(baseline: list[float], candidate: list[float]) -> tuple[float, float, float] | None:
    """``(difference of means, its standard error, Welch-Satterthwaite df)``, candidate - baseline; None with
    fewer than 2 values a side."""
    if len(baseline) < 2 or len(candidate) < 2:
        return None
    b, c = np.asarray(baseline, float), np.asarray(candidate, float)
    vb, vc = float(np.var(b, ddof=1)) / len(b), float(np.var(c, ddof=1)) / len(c)
    se2 = vb + vc
    if se2 <= 0:
        return float(c.mean() - b.mean()), 0.0, float(len(b) + len(c) - 2)
    df = se2**2 / (vb**2 / (len(b) - 1) + vc**2 / (len(c) - 1))
    return float(c.mean() - b.mean()), math.sqrt(se2), float(df)


def verdict(low: float, high: float, tolerance: float) -> str:
    """The verdict of a ratio's interval (see the module's docstring)."""
    if low >= 1 - tolerance and high <= 1 + tolerance:
        return NO_CHANGE
    if high < 1:
        return REGRESSION
    if low > 1:
        return IMPROVEMENT
    return NOT_DETECTABLE


def compare_records(baseline: list[RunRecord], candidate: list[RunRecord], tolerance: float = TOLERANCE,
                    level: float = LEVEL) -> list[Comparison]:
    """One ``Comparison`` per configuration (and per paired arm comparison) of either side, sorted by name."""
    base, cand = _group(baseline), _group(candidate)
    keys = sorted(set(base.example) | set(cand.example), key=lambda k: (cand.labels.get(k) or base.labels[k], k))
    tests = {}
    for key in keys:
        b, c, basis = _units(base, cand, key)
        # the blocks of two paired processes may differ in spread: Welch; processes of one configuration: pooled
        got = welch(b, c) if basis.endswith("blocks of one paired process") else pooled(b, c)
        if got is not None:
            tests[key] = (got, basis)
    family = max(len(tests), 1)
    alpha = (1 - level) / family
    rows = []
    for key in keys:
        side = cand if key in cand.example else base
        common = {"configuration": side.labels[key], "key": key, "settings": settings(side.example[key]),
                  "baseline_n": len(base.samples.get(key, [])), "candidate_n": len(cand.samples.get(key, [])),
                  "failed": cand.failed.get(key, [])}
        b_vals, c_vals = base.samples.get(key, []), cand.samples.get(key, [])
        paired = key in base.paired | cand.paired
        if b_vals and not paired:
            common["baseline_mean"] = math.exp(float(np.mean(b_vals)))
        if c_vals and not paired:
            common["candidate_mean"] = math.exp(float(np.mean(c_vals)))
        if not b_vals or not c_vals:
            why = MISSING if b_vals else NEW
            note = "measured in the baseline only" if why == MISSING else "not measured in the baseline"
            if not c_vals and common["failed"]:
                note = f"every candidate run failed ({common['failed'][0]})"
            rows.append(Comparison(**common, verdict=why, note=note))
            continue
        ratio = math.exp(float(np.mean(c_vals)) - float(np.mean(b_vals)))
        if key not in tests:
            rows.append(Comparison(**common, verdict=NOT_DETECTABLE, ratio=ratio, note=ONE_PROCESS))
            continue
        (d, se, df), basis = tests[key]
        t_crit = float(stats.t.ppf(1 - alpha / 2, df))
        low, high = math.exp(d - t_crit * se), math.exp(d + t_crit * se)
        mde = -math.expm1(-(t_crit + float(stats.t.ppf(POWER, df))) * se)
        rows.append(Comparison(**common, verdict=verdict(low, high, tolerance), ratio=math.exp(d), low=low, high=high,
                               mde=mde, df=df, level=1 - alpha, family=family, basis=basis))
    return _say_what_differs(rows)


def _differences(a: Mapping[str, JsonValue], b: Mapping[str, JsonValue], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out.extend(_differences(x, y, f"{prefix}{k}."))
        elif x != y:
            out.append(f"{prefix}{k} {x!r} v {y!r}")
    return out


def _say_what_differs(rows: list[Comparison]) -> list[Comparison]:
    """A configuration of the baseline only and one of the candidate only with the same name differ in a setting
    the name leaves out: say which, in both rows' notes."""
    by_label: dict[str, dict[str, Comparison]] = {}
    for row in rows:
        if row.verdict in (MISSING, NEW):
            by_label.setdefault(row.configuration, {})[row.verdict] = row
    out = []
    for row in rows:
        pair = by_label.get(row.configuration, {})
        if row.verdict in (MISSING, NEW) and len(pair) == 2:
            diff = _differences(pair[MISSING].settings, pair[NEW].settings)
            row = replace(row, note=f"{row.note}; settings differ from the other side's (baseline v candidate): "
                                    + ", ".join(diff))
        out.append(row)
    return out


def read_folders(folders: list[Path]) -> list[RunRecord]:
    """Every record of ``folders`` (each a run folder with a ``runs/`` folder); a folder without one is refused."""
    records = []
    for folder in folders:
        if not (folder / "runs").is_dir():
            raise ValueError(f"{folder} is not a run folder: it has no runs/ folder of run records")
        records.extend(results.collect(folder))
    return records


def compare_folders(baseline: list[Path], candidate: list[Path], tolerance: float = TOLERANCE) -> list[Comparison]:
    """``compare_records`` over the records of the baseline folders and of the candidate folders."""
    return compare_records(read_folders(baseline), read_folders(candidate), tolerance)


def line(row: Comparison) -> str:
    """A row in words: verdict, ratio and interval, MDE, the configuration."""
    if row.ratio is None:
        return f"{row.verdict:14} {row.configuration}: {row.note}"
    if row.low is None:
        return f"{row.verdict:14} {row.configuration}: ratio {row.ratio:.3f}, {row.note}"
    return (f"{row.verdict:14} {row.configuration}: ratio {row.ratio:.3f} [{row.low:.3f}, {row.high:.3f}], "
            f"MDE {row.mde:.1%} ({row.candidate_n} v {row.baseline_n} {row.basis})")
