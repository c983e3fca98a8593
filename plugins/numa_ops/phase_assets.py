"""A phase's Asset: what schedules the phases after it, and which DAG runs of the phase may update it.

The gate updates the Asset through its AssetAlias, and only for a run of the phase as phases.yaml defines
it, or one whose trigger form says ``update_asset: true``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

from numa_ops.phases import Phase

if TYPE_CHECKING:
    from numa_ops.trigger_request import TriggerRequest


def phase_asset(dag_id: str) -> Asset:
    """The Asset a phase updates when it passes its gate."""
    return Asset(name=dag_id, uri=f"numa-lab://phases/{dag_id}")


def phase_alias(dag_id: str) -> AssetAlias:
    """The gate's outlet: through it the gate updates the phase's Asset only for a run of the phase itself."""
    return AssetAlias(name=f"{dag_id}_gate")


def not_the_phase(phase: Phase, request: TriggerRequest, hosts: list[str] | None = None) -> list[str]:
    """How a DAG run's request differs from the phase as phases.yaml defines it (empty: it is the phase)."""
    return request.not_the_phase(phase, hosts)


def update_phase_asset(
    dag_id: str, phase: Phase, hosts: list[str], request: TriggerRequest, outlet_events: Any
) -> bool:
    """After a passing gate: add the phase's Asset to the gate's ``outlet_events`` if the run is the phase as
    defined, or asked for it (``update_asset: true``); say in the log which, and return whether it was added.

    A run that is not the phase (an ad-hoc experiment, a subset of its studies or hosts, overrides, sweeps,
    a num_samples) updates nothing, and so starts no later phase.
    """
    reasons = request.not_the_phase(phase, hosts)
    if reasons and not request.update_asset:
        print(
            f"not the phase as phases.yaml defines it ({'; '.join(reasons)}): the Asset {dag_id} is not updated "
            "and no later phase starts (update_asset: true in the form updates it anyway)"
        )
        return False
    outlet_events[phase_alias(dag_id)].add(phase_asset(dag_id))
    print(f"Asset {dag_id} updated" + (f" on request (update_asset: true; {'; '.join(reasons)})" if reasons else ""))
    return True
