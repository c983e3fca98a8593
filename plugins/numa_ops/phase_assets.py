"""A phase's Asset: what schedules the phases after it, and which DAG runs of the phase may update it.

The gate updates the Asset through its AssetAlias, and only for a run of the phase as phases.yaml defines
it, or one whose trigger form says ``update_asset: true``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

from numa_ops.phases import Phase

if TYPE_CHECKING:
    from numa_ops.trigger_params import TriggerParams


def phase_asset(dag_id: str) -> Asset:
    """The Asset a phase updates when it passes its gate."""
    return Asset(name=dag_id, uri=f"numa-lab://phases/{dag_id}")


def phase_alias(dag_id: str) -> AssetAlias:
    """The gate's outlet: through it the gate updates the phase's Asset only for a run of the phase itself."""
    return AssetAlias(name=f"{dag_id}_gate")


def not_the_phase(phase: Phase, params: TriggerParams, hosts: list[str] | None = None) -> list[str]:
    """How a DAG run's form differs from the phase as phases.yaml defines it (empty: it is the phase)."""
    reasons = []
    if hosts and params.get("hosts") is not None and set(params["hosts"]) != set(hosts):
        reasons.append(f"hosts {', '.join(params['hosts']) or 'none'} of {', '.join(hosts)}")
    if params.get("experiment"):
        reasons.append(f"ad-hoc experiment {params['experiment']}")
    studies = params.get("studies")
    if studies is not None and set(studies) != set(phase.studies):
        reasons.append(f"studies {', '.join(studies) or 'none'} of {', '.join(phase.studies)}")
    for key in ("overrides", "sweeps"):
        if params.get(key):
            reasons.append(f"{key} {' '.join(params[key])}")
    if params.get("num_samples"):
        reasons.append(f"num_samples={params['num_samples']}")
    return reasons


def update_phase_asset(
    dag_id: str, phase: Phase, hosts: list[str], params: TriggerParams, outlet_events: Any
) -> bool:
    """After a passing gate: add the phase's Asset to the gate's ``outlet_events`` if the run is the phase as
    defined, or asked for it (``update_asset: true``); say in the log which, and return whether it was added.

    A run that is not the phase (an ad-hoc experiment, a subset of its studies or hosts, overrides, sweeps,
    a num_samples) updates nothing, and so starts no later phase.
    """
    reasons = not_the_phase(phase, params, hosts)
    if reasons and not params.get("update_asset"):
        print(
            f"not the phase as phases.yaml defines it ({'; '.join(reasons)}): the Asset {dag_id} is not updated "
            "and no later phase starts (update_asset: true in the form updates it anyway)"
        )
        return False
    outlet_events[phase_alias(dag_id)].add(phase_asset(dag_id))
    print(f"Asset {dag_id} updated" + (f" on request (update_asset: true; {'; '.join(reasons)})" if reasons else ""))
    return True
