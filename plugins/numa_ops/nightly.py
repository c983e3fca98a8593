"""Nightly regression check: tonight's runs against a baseline night, configuration by configuration.

The comparison is :mod:`numa_ops.compare`'s (the same as ``./numa-lab compare``): per configuration the ratio
tonight / baseline of the geometric mean samples/s over worker processes, with its t interval over processes
(at least 2 a night: ``test.repeats >= 2``), or of a paired run's arm ratio over its blocks; every interval
Bonferroni-corrected over the night's configurations, so that an A/A night fails at most 5% of the time. A
configuration with one process a night is ``not detectable`` (no interval to judge it by), never judged on a
run's own interval over its trials. A configuration with no successful run tonight where its runs failed is a
regression; one the baseline had and tonight lacks is missing. The baseline is the last accepted night (one
without a regression), or a pinned run folder. ``check_night`` is the whole nightly step for one run folder:
choose the baseline, compare, store the verdicts and write ``regressions.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from numa_ops import compare as comparing
from numa_ops import regressions, results
from numa_ops.regressions import NightVerdict

REGRESSION, IMPROVEMENT, NEW, MISSING = comparing.REGRESSION, comparing.IMPROVEMENT, comparing.NEW, comparing.MISSING
NO_CHANGE, NOT_DETECTABLE = comparing.NO_CHANGE, comparing.NOT_DETECTABLE
config_key, label = comparing.config_key, comparing.label


def _verdict(row: comparing.Comparison, night: str, baseline: str | None) -> NightVerdict:
    """A comparison as a row of the ``regressions`` table."""
    verdict = row.verdict
    if row.failed and row.candidate_n == 0:  # nothing of it succeeded tonight: its runs failed
        verdict = REGRESSION
    ratio = row.ratio if row.ratio is not None else (
        row.candidate_mean / row.baseline_mean if row.candidate_mean and row.baseline_mean else None)
    return NightVerdict(
        night=night, baseline=baseline, config_key=row.key, config=row.configuration,
        tonight_mean=row.candidate_mean, baseline_mean=row.baseline_mean,
        change=ratio - 1 if ratio is not None else None, verdict=verdict, error=row.failed[0] if row.failed else None,
        ratio_low=row.low, ratio_high=row.high, mde=row.mde,
        processes=row.candidate_n, baseline_processes=row.baseline_n, basis=row.basis or row.note,
    )


def compare(tonight: Path, baseline: Path | None, tolerance: float = comparing.TOLERANCE) -> list[NightVerdict]:
    """One verdict per configuration of tonight's folder (and per baseline configuration gone missing)."""
    records = results.collect(tonight)  # once: a record written in between must not be counted twice
    base = results.collect(baseline) if baseline else []
    rows = comparing.compare_records(base, records, tolerance)
    return [_verdict(row, tonight.name, baseline.name if baseline else None) for row in rows]


def accepted(verdicts: list[NightVerdict]) -> bool:
    """A night is accepted (a baseline for later nights) when nothing regressed or went missing."""
    return not any(v.verdict in (REGRESSION, MISSING) for v in verdicts)


LAST_ACCEPTED = "last_accepted"


class NightOfFolderJson(TypedDict):
    """One run folder's night in the nightly task's XCom: its GPU host's queue (None: no GPU hosts configured), the
    baseline's name (None: this night becomes the baseline) and how many verdicts."""

    host: str | None
    baseline: str | None
    verdicts: int


class NightsJson(TypedDict):
    """The nightly task's XCom: each run folder's night by folder name (one host: one folder)."""

    folders: dict[str, NightOfFolderJson]


@dataclass(frozen=True)
class NightCheck:
    """What :func:`check_night` found: the verdicts (``regressions.json`` holds them as JSON), whether the night is
    accepted, the baseline's name (None: this night becomes the baseline) and the problems."""

    verdicts: tuple[NightVerdict, ...]
    ok: bool
    baseline: str | None
    problems: tuple[str, ...] = ()


def baseline_name(folder_path: Path, key: str, baseline: str, host_queue: str | None = None) -> str | None:
    """The baseline night's folder: the last accepted night of ``key``, or the pinned folder (``<name>_<host>``
    on a GPU host); None when there is no accepted night yet."""
    if baseline == LAST_ACCEPTED:
        return regressions.last_accepted_night(key, before=folder_path.name)
    return f"{baseline}_{host_queue}" if host_queue else baseline


def check_night(folder_path: Path, key: str, baseline: str, host_queue: str | None = None) -> NightCheck:
    """Compare tonight's folder with its baseline; store the verdicts under ``key`` and write regressions.json.

    ``key`` names the series of nights compared with each other (per GPU host: ``<dag_id>@<queue>``);
    ``baseline`` is ``last_accepted`` or a pinned run folder's name. Returns the verdicts, whether the
    night is accepted (``ok``), the baseline's name (None: this night becomes the baseline) and the problems.
    """
    base_name = baseline_name(folder_path, key, baseline, host_queue)
    verdicts = compare(folder_path, results.run_folder(base_name) if base_name else None)
    ok = accepted(verdicts)
    regressions.save_verdicts(key, verdicts, ok)
    results.write_json_atomic(folder_path / "regressions.json", [v.to_json() for v in verdicts])
    problems = []
    if not ok:
        bad = [str(v.config) for v in verdicts if v.verdict in (REGRESSION, MISSING)]
        problems.append(f"regression against {base_name}: {'; '.join(bad)}")
    return NightCheck(verdicts=tuple(verdicts), ok=ok, baseline=base_name, problems=tuple(problems))
