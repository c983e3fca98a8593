"""``python -m numa_ops.rehearsal``: boot the two-node guest, measure numa-lab's real path in it, load and
report its records here, prove it all.

Results land in ``<outputs>/numa-rehearsal/<UTC time>/`` (its own DuckDB file and reports: emulated numbers
never mix with measured ones). Exit status 0 when every step ran and every proof held, 1 otherwise, 2 when the
guest cannot be started here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from numa_ops import paths, settings
from numa_ops.rehearsal import finish, proofs, vm
from numa_ops.rehearsal.guest import GUEST_JSON

TIMEOUT_S = 40 * 60


def rehearsal_outputs(base: Path | None = None) -> Path:
    """A fresh folder for one rehearsal under the outputs folder."""
    return (base or paths.outputs_dir()) / "numa-rehearsal" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


def share_report_bundle() -> None:
    """Build the report's Vega bundle here and point the guest at this host's cache folder (it sees the host's
    files): vl-convert takes seconds to bundle it natively, minutes under emulation."""
    from numa_ops.report.page import VL_VERSION
    from numa_ops.report.vega_bundle import javascript_bundle

    javascript_bundle(VL_VERSION)
    os.environ.setdefault("NUMA_LAB_CACHE", str(settings.cache_dir()))  # handed on to the guest's command


def _guest_folder(outputs: Path) -> Path | None:
    """The run folder the guest measured into, if it wrote one."""
    path = outputs / GUEST_JSON
    folder = json.loads(path.read_text()).get("folder") if path.is_file() else None
    return Path(folder) if folder and (Path(folder) / "plan.json").is_file() else None


def finish_guest_folder(outputs: Path) -> str | None:
    """Load, report and gate the guest's run folder here (``finish``); None, or why it failed (then the proofs
    say what is missing, and the rehearsal fails)."""
    folder = _guest_folder(outputs)
    if folder is None:
        return None
    try:
        finish.finish(outputs, folder)
    except Exception as exc:  # noqa: BLE001 - said as a problem of the rehearsal, with the proofs after it
        return f"loading, reporting or gating the guest's records failed: {type(exc).__name__}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numa_ops.rehearsal", description=__doc__.split("\n")[0])
    parser.add_argument("--outputs", type=Path, default=None, help="where this rehearsal writes (default: a new "
                        "folder under <outputs>/numa-rehearsal/)")
    parser.add_argument("--timeout-s", type=float, default=TIMEOUT_S, help="stop the guest after this long")
    args = parser.parse_args(argv)
    outputs = (args.outputs or rehearsal_outputs()).resolve()
    started = time.monotonic()
    share_report_bundle()
    try:
        guest = vm.find_guest(paths.plugins_dir(), outputs)
        print(f"booting a two-node guest (software emulation; several minutes): results in {outputs}", flush=True)
        rc = vm.boot(guest, args.timeout_s)
    except vm.VmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finish_problem = finish_guest_folder(outputs)
    found = proofs.judge(outputs)
    if finish_problem:
        found.problems.insert(0, finish_problem)
    if rc != 0:
        found.problems.insert(0, f"the guest's rehearsal step exited {rc}")
    for problem in found.problems:
        print(f"problem: {problem}", file=sys.stderr)
    if found.gate:
        print(found.gate)
    print(f"took {time.monotonic() - started:.0f} s")
    print(found.line())
    return 1 if found.problems else 0


if __name__ == "__main__":
    sys.exit(main())
