"""What the host does with the guest's run folder: the DuckDB load, the views, the reports and Phase 1's gate,
the same calls ``python -m numa_ops run`` makes after measuring. They read the guest's files, not its kernel,
so they run natively here; their seconds go to ``host.json`` beside the guest's ``guest.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from numa_ops.gate import GateVerdictJson
    from numa_ops.pipeline import LocationsJson

HOST_JSON = "host.json"


class HostJson(TypedDict):
    """``host.json``: the folder the host finished, where its results are, its gate verdict, each step's seconds."""

    folder: str
    locations: LocationsJson
    gate: GateVerdictJson
    seconds: dict[str, float]


def finish(outputs: Path, folder: Path) -> HostJson:
    """Load ``folder`` into ``outputs``' DuckDB file, write its reports and its gate; what each step took."""
    from numa_ops import pipeline, settings
    from numa_ops.gate import judge_run_folder
    from numa_ops.phases import load_phases

    settings.use_outputs_dir(outputs)  # the rehearsal's own database and reports
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    pipeline.summarize_and_load(folder)
    seconds["load"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    locations = pipeline.write_reports(folder)
    seconds["report"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    verdict = judge_run_folder(folder, load_phases()["phase1_framework_validation"].gate).to_json()
    seconds["gate"] = round(time.monotonic() - t0, 1)
    done: HostJson = {"folder": str(folder), "locations": locations, "gate": verdict, "seconds": seconds}
    (outputs / HOST_JSON).write_text(json.dumps(done, indent=2))
    return done
