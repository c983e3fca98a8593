"""Which DAG runs of a phase update its Asset (and so start the phases after it)."""

from __future__ import annotations

import pytest
from numa_ops.phase_assets import phase_alias, phase_asset, update_phase_asset
from numa_ops.phases import load_phases
from numa_ops.trigger_request import TriggerRequest

PHASE1 = "phase1_framework_validation"


class _Accessor(list):
    """What the gate's ``outlet_events[alias]`` offers: add an Asset event."""

    def add(self, asset):
        self.append(asset)


@pytest.mark.parametrize(
    ("form", "updated", "line"),
    [
        pytest.param({"hosts": ["gpu-a", "gpu-b"]}, True, f"Asset {PHASE1} updated", id="every-host"),
        pytest.param({"hosts": ["gpu-b"]}, False, "(hosts gpu-b of gpu-a, gpu-b): the Asset", id="one-of-two-hosts"),
        pytest.param({"hosts": ["gpu-b"], "update_asset": True}, True,
                     f"Asset {PHASE1} updated on request (update_asset: true; hosts gpu-b of gpu-a, gpu-b)",
                     id="one-host-on-request"),
        pytest.param({"hosts": ["gpu-a", "gpu-b"], "sweeps": ["experiment.test.batch_size=4,8"]}, False,
                     "(sweeps experiment.test.batch_size=4,8)", id="sweep"),
    ],
)
def test_only_the_phase_or_a_request_updates_the_asset(configs_dir, capsys, form, updated, line):
    events = {phase_alias(PHASE1): _Accessor()}
    request = TriggerRequest.from_params(form, ["gpu-a", "gpu-b"])
    assert update_phase_asset(PHASE1, load_phases()[PHASE1], ["gpu-a", "gpu-b"], request, events) is updated
    assert events[phase_alias(PHASE1)] == ([phase_asset(PHASE1)] if updated else [])
    assert line in capsys.readouterr().out.strip().splitlines()[-1]


def test_the_asset_and_the_gates_alias_are_named_for_the_phase():
    assert (phase_asset(PHASE1).name, phase_asset(PHASE1).uri) == (PHASE1, f"numa-lab://phases/{PHASE1}")
    assert phase_alias(PHASE1).name == f"{PHASE1}_gate"
