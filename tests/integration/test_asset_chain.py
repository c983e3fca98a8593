"""Phase 1 triggered through the REST API with a tiny CPU config; Phases 2 and 3 start by themselves
through its Asset, Phase 4 after 2; all succeed."""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.conftest import CHAIN, call, dag_runs, wait_for_dags

pytestmark = pytest.mark.integration


def test_phase1_trigger_starts_the_chain(airflow, outputs_dir):
    token, log = airflow
    wait_for_dags(token, [d for d in CHAIN if d != "nightly_sweep"])
    call("POST", "/api/v2/dags/phase1_framework_validation/dagRuns", token, {"logical_date": None, "conf": {}})

    wanted = ["phase1_framework_validation", "phase2_numa_locality", "phase3_scaling", "phase4_memory_transfer"]
    deadline = time.monotonic() + 600
    states: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        states = {d: (dag_runs(token, d) or [{"state": None}])[0]["state"] for d in wanted}
        if any(s == "failed" for s in states.values()) or all(s == "success" for s in states.values()):
            break
        time.sleep(5)
    assert states == dict.fromkeys(wanted, "success"), f"{states}\n{log.read_text()[-3000:]}"
    for dag_id in wanted[1:]:
        assert dag_runs(token, dag_id)[0]["run_type"] == "asset_triggered"
    for dag_id in wanted:  # each phase's folder passed its gate (Phase 5, after 3, may still be running)
        (folder,) = [p for p in outputs_dir.iterdir() if p.name.startswith(dag_id.split("_")[0] + "_")]
        assert json.loads((folder / "gate.json").read_text())["passed"], folder.name
