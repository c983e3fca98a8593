"""Nsight Systems around a lane's worker: find the binary, wrap the worker, note what report it left, keep it or not.

``profile.nsys``: ``off``; ``on`` (profiled where nsys and the disk allow, else unprofiled with a warning
in every record); ``required`` (no run starts unprofiled). ``profile.retention`` says which reports stay.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from numa_ops import results, settings
from numa_ops.config import ProfileConfig
from numa_ops.specs import RunSpec

NSYS_LOCATIONS = (
    "/opt/nvidia/nsight-systems/*/bin/nsys",
    "/opt/nvidia/nsight-systems-*/bin/nsys",
    "/usr/local/cuda*/bin/nsys",
    "/opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys",
)


def _version_key(path: str) -> list[Any]:
    """Sort key that orders the numbers in a path by value: 2024.10 after 2024.9."""
    return [(1, int(part), "") if part.isdigit() else (0, 0, part) for part in re.split(r"(\d+)", path)]


def find_nsys() -> str | None:
    """Nsight Systems: ``NUMA_LAB_NSYS``, else ``nsys`` on PATH, else the usual install folders."""
    configured = settings.nsys_override()
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    found = shutil.which("nsys")
    if found:
        return found
    for pattern in NSYS_LOCATIONS:
        hits = sorted(glob.glob(pattern), key=_version_key, reverse=True)  # newest version first
        if hits:
            return hits[0]
    return None


def nsys_prefix(nsys: str, output: Path) -> list[str]:
    """``nsys profile`` with CUDA, NVTX and OS-runtime tracing into ``output`` (``.nsys-rep`` added)."""
    return [nsys, "profile", "--trace=cuda,nvtx,osrt", f"--output={output}", "--force-overwrite=true"]


def usable_nsys(profile: ProfileConfig, folder_path: Path) -> tuple[str | None, str | None]:
    """(nsys binary, warning) for ``profile``; a warning means: run unprofiled (or not at all, if required)."""
    if profile.nsys == "off":
        return None, None
    nsys = find_nsys()
    if nsys is None and settings.nsys_override():
        return None, f"nsys not found: NUMA_LAB_NSYS={settings.nsys_override()} is not an executable file"
    if nsys is None:
        return None, ("nsys not found (NUMA_LAB_NSYS, PATH, /opt/nvidia/nsight-systems, /usr/local/cuda/bin, "
                      "/opt/nvidia/nsight-compute/*/host/target-linux-x64)")
    free_gb = shutil.disk_usage(folder_path).free / 1e9
    if free_gb < profile.min_free_gb:
        return None, (f"only {free_gb:.1f} GB free under {folder_path}, below profile.min_free_gb="
                      f"{profile.min_free_gb} (nsys reports take 1-2 GB each)")
    return nsys, None


def refusal(profile: ProfileConfig, folder_path: Path) -> str | None:
    """With ``profile.nsys: required``, the reason no run can start unprofiled."""
    if profile.nsys != "required":
        return None
    _, warning = usable_nsys(profile, folder_path)
    return f"profile.nsys=required: {warning}" if warning else None


class NsysSession:
    """Nsight Systems around one worker: the argv prefix that wraps it, the note the worker puts in each
    record (``profile``), and afterwards the report it left, kept or removed by ``profile.retention``."""

    def __init__(self, profile: ProfileConfig, folder_path: Path, name: str, log: Callable[[str], None]):
        self.profile, self.folder_path, self.name, self.log = profile, folder_path, name, log
        self.report: Path | None = None  # the report's path without its suffix (nsys adds .nsys-rep)
        self.prefix: list[str] | None = None
        self.note = settings.ProfileNote(nsys=profile.nsys, warning=None)

    def wrap(self, stamp: int) -> None:
        """Decide whether this worker runs under nsys, with its report named ``<lane>.<stamp>``."""
        nsys, warning = usable_nsys(self.profile, self.folder_path)
        if nsys:
            self.report = self.folder_path / "nsys" / f"{self.name}.{stamp}"
            self.report.parent.mkdir(parents=True, exist_ok=True)
            self.prefix = nsys_prefix(nsys, self.report)
            self.note.update(nsys_binary=nsys, report=str(self.report) + ".nsys-rep")
        elif warning:
            self.note["warning"] = f"profile.nsys=on but {warning}: ran without profiling"
            self.log(f"[{self.name}] WARNING {self.note['warning']}")

    def finish(self, runs: list[RunSpec], any_failed: bool) -> None:
        """Note in the worker's records what nsys left, then apply ``profile.retention`` to the report."""
        if self.report is None:
            return
        self._note_report(runs, self.report)
        retention = self.profile.retention
        if retention == "none" or (retention == "failed" and not any_failed):
            for path in self.report.parent.glob(self.report.name + ".*"):
                path.unlink(missing_ok=True)
            self.log(f"[{self.name}] nsys report {self.report.name} removed (profile.retention={retention})")

    def _note_report(self, runs: list[RunSpec], report: Path) -> None:
        """Say in this worker's records what nsys really left: a report, only its raw capture, or nothing."""
        rep, raw = report.with_name(report.name + ".nsys-rep"), report.with_name(report.name + ".qdstrm")
        if rep.is_file():
            produced = settings.ProfileNote(report=str(rep), report_bytes=rep.stat().st_size, warning=None)
        elif raw.is_file():
            produced = settings.ProfileNote(
                report=None, raw_capture=str(raw), raw_capture_bytes=raw.stat().st_size,
                warning="nsys wrote only its raw .qdstrm capture (its importer failed): no .nsys-rep")
        else:
            produced = settings.ProfileNote(report=None, warning="nsys produced no report")
        for spec in runs:
            path = results.record_path(self.folder_path, spec.run_id)
            try:
                rec = results.read_record(path)
            except ValueError:
                continue
            if rec is not None and (rec.profile or {}).get("report") == str(rep):  # measured by this worker
                rec.profile = {**(rec.profile or {}), **produced}
                results.write_record(self.folder_path, rec)
        if produced["warning"]:
            self.log(f"[{self.name}] WARNING {produced['warning']}")
