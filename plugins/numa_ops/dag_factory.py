"""Builds each phase DAG from ``include/configs/phases.yaml``; ``dags/*.py`` call this and nothing else.

discover_topology -> plan_runs -> measure (one mapped instance per lane, or per device where a device has
several lanes: repeats, placements, patterns) -> load_duckdb -> report -> gate

The gate comes after load and report so that results are loaded and reported even when it fails. A DAG
run fails when planning is refused (``plan_runs`` fails, its log ending with the planner's message; the
gate, which runs anyway, fails too, saying so last) or when the gate fails (every lane failing fails it).
Only a run of the phase as phases.yaml defines it (or one whose form says ``update_asset: true``) that
passes its gate updates the phase's Asset (through the gate's AssetAlias), which schedules the phases after it.

With GPU hosts configured (``NUMA_LAB_HOSTS``, Celery), each host gets a task group of its own
(``<host>.discover_topology -> <host>.plan_runs -> <host>.measure``) on the Celery queue named for
it, with its own run folder (``<folder>_<host>``); load, report and gate cover every host's folder.

What each task does is :mod:`numa_ops.phase_tasks`; this module only declares the tasks and their edges.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, TaskGroup, TriggerRule, task

from numa_ops import phase_tasks
from numa_ops.config import ConfigError
from numa_ops.hosts import configured_hosts
from numa_ops.operators import NumaLaneOperator
from numa_ops.phase_assets import not_the_phase, phase_alias, phase_asset, update_phase_asset
from numa_ops.phases import Phase, load_phases
from numa_ops.roles import MEANING
from numa_ops.trigger_params import phase_params as _params
from numa_ops.trigger_request import TriggerRequest

if TYPE_CHECKING:
    from numa_ops.gate import GateResultJson
    from numa_ops.nightly import NightsJson
    from numa_ops.specs import DeviceTurnJson
    from numa_ops.topology import TopologyJson
    from numa_ops.trigger_params import TriggerParams

__all__ = ["build_phase_dag", "not_the_phase", "phase_alias", "phase_asset"]

discover_topology = task(phase_tasks.discover_topology)
load_duckdb = task(trigger_rule=TriggerRule.ALL_DONE)(phase_tasks.load_duckdb)
report = task(trigger_rule=TriggerRule.ALL_DONE)(phase_tasks.report)
GATED_STEPS = ["load_duckdb", "report"]  # a failed one fails the gate (failed measuring shows in the run records)


def _phase_doc(dag_id: str, phase: Phase, phases: dict[str, Phase] | None = None) -> str:
    """The DAG's page: goal, question, what starts it and what it starts, when it fails, studies, gate."""
    studies = "\n".join(
        f"- `{name}`: `experiment={study.experiment}` {' '.join(f'`{o}`' for o in study.overrides)}"
        + (f" (zipped: {study.zip})" if study.zip else "")
        + (f" on {MEANING[study.role]} of the host (skipped where it has none)" if study.role else "")
        for name, study in phase.studies.items()
    )
    after = ", ".join(f"`{a}`" for a in phase.after) or "nothing (trigger by hand)"
    if phase.schedule:
        after = f"the schedule `{phase.schedule}`"
    next_phases = [name for name, later in (phases or {}).items() if dag_id in later.after]
    starts = (
        f"a passing run of the phase as defined here (all its studies, no ad-hoc experiment, overrides, sweeps or "
        f"num_samples) updates the Asset `{dag_id}`, which starts {', '.join(f'`{n}`' for n in next_phases)} "
        "(a phase with several Assets before it starts once each has been updated). An ad-hoc run updates it only "
        "with `update_asset: true` in the form."
        if next_phases
        else f"nothing starts after this phase (its Asset `{dag_id}` is updated by a passing run of the phase as "
             f"defined)."
    )
    return (
        f"# {phase.title}\n\n**Goal:** {phase.goal}\n\n**Research question:** {phase.question}\n\n"
        f"**Starts after:** {after}. Triggering by hand works too.\n\n**Starts next:** {starts}\n\n"
        "**Fails** when planning is refused (the reason is the last line of `plan_runs`'s log), or when the gate "
        "fails (failed or missing runs, a failed load or report, comparisons that cannot see the effect: the last "
        "line of `gate`'s log).\n\n"
        f"**Studies** (the plan's commands):\n{studies}\n\n"
        f"**Gate:** failure rate <= {phase.gate.max_failure_rate:.0%}"
        + (
            f", every comparison's MDE <= {phase.gate.max_mde:.0%} (paired, or local v remote between processes)"
            if phase.gate.max_mde is not None
            else ""
        )
        + "; a run's own interval over its trials is shown, not judged.\n\n"
        "Results: `outputs/<folder>/results.json`, `experiment_summary.json`, `experiment.log`; "
        "DuckDB `outputs/numa_lab.duckdb` (table `runs`, views `numa_penalty`); report "
        "`outputs/<folder>/report/index.html`."
    )


def _fail_if_nothing_was_planned(context: Any) -> None:
    """The gate's pre-execute hook: :func:`numa_ops.phase_tasks.fail_if_nothing_was_planned`."""
    phase_tasks.fail_if_nothing_was_planned(context["ti"], context["task"].upstream_task_ids)


def _update_asset(dag_id: str, phase: Phase, hosts: list[str], context: Any, result: Any = None) -> None:
    """The gate's post-execute hook (it passed): :func:`numa_ops.phase_assets.update_phase_asset`."""
    request = TriggerRequest.from_params(context["params"], hosts)  # plan_runs refused it already if it were bad
    update_phase_asset(dag_id, phase, hosts, request, context["outlet_events"])


def _check_pinned_hosts(dag_id: str, phase: Phase, hosts: list[str]) -> None:
    """Refuse a study pinned to a host that ``NUMA_LAB_HOSTS`` does not name."""
    for study_name, study in phase.studies.items():
        unknown = [h for h in study.hosts if hosts and h not in hosts]
        if unknown:
            raise ConfigError(
                f"phases.yaml: {dag_id}.studies.{study_name}.hosts: {unknown} not in NUMA_LAB_HOSTS "
                f"({', '.join(hosts)})"
            )


def _phase_bound_tasks(dag_id: str, phase: Phase, hosts: list[str]) -> tuple[Any, Any, Any]:
    """The tasks whose bodies need the phase: plan_runs, gate and compare_baseline."""

    @task
    def plan_runs(
        topology: TopologyJson, host: str | None = None, params: TriggerParams | None = None, dag_run: Any = None,
        ti: Any = None,
    ) -> list[DeviceTurnJson]:
        """Validate the request against the phase's studies and the host; write the plan."""
        return phase_tasks.plan_runs(dag_id, phase, topology, params, dag_run, ti, host)

    @task(
        outlets=[phase_alias(dag_id)],
        trigger_rule=TriggerRule.ALL_DONE,
        pre_execute=_fail_if_nothing_was_planned,
        post_execute=functools.partial(_update_asset, dag_id, phase, hosts),
        multiple_outputs=True,  # passed and each folder's verdict, each its own XCom as well
    )
    def gate(plans: Any, ti: Any = None) -> GateResultJson:
        """Fail the phase (and hold back the next ones) on failed runs or steps, or comparisons too coarse."""
        return phase_tasks.gate(dag_id, phase, plans, phase_tasks.failed_steps(ti, GATED_STEPS))

    @task(multiple_outputs=True)  # each key its own XCom as well
    def compare_baseline(plans: Any) -> NightsJson:
        """Compare tonight with the baseline night; a regression outside both CIs fails the run."""
        return phase_tasks.compare_baseline(dag_id, phase, plans)

    return plan_runs, gate, compare_baseline


def _discover_plan_measure(plan_runs: Any, phase: Phase, host: str | None) -> tuple[Any, Any]:
    """discover_topology -> plan_runs -> measure on ``host``: in its task group, on its Celery queue; with
    ``host`` None, on the default queue and in no group. Returns plan_runs's output and the mapped measure."""
    queue, for_host = ({"queue": host}, {"host": host}) if host else ({}, {})
    tooltip = f"discover, plan and measure on {host} (queue {host})"
    with TaskGroup(group_id=host, tooltip=tooltip) if host else nullcontext():
        plan = plan_runs.override(**queue)(discover_topology.override(**queue)(), **for_host)
        measure = NumaLaneOperator.partial(
            task_id="measure", map_index_template="{{ lane_name }}", max_active_tis_per_dagrun=phase.max_lanes, **queue,
        ).expand(lane=plan)
    return plan, measure


def build_phase_dag(dag_id: str) -> DAG:
    """The DAG of phase ``dag_id``."""
    phases = load_phases()
    phase = phases[dag_id]
    hosts = configured_hosts()
    _check_pinned_hosts(dag_id, phase, hosts)
    with DAG(
        dag_id=dag_id,
        description=phase.goal,
        doc_md=_phase_doc(dag_id, phase, phases),
        schedule=phase.schedule or [phase_asset(a) for a in phase.after] or None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["numa-lab", *phase.tags],
        params=_params(phase, hosts, dag_id),
        max_active_runs=1,
        default_args={"retries": 0},
        # a cron-scheduled sweep would start at once on its first unpause; it waits for a person instead
        is_paused_upon_creation=True if phase.schedule else None,
    ) as dag:
        plan_runs, gate, compare_baseline = _phase_bound_tasks(dag_id, phase, hosts)
        plans, measures = [], []
        for host in hosts or [None]:  # None: no GPU hosts configured, every task on the default queue
            plan, measure = _discover_plan_measure(plan_runs, phase, host)
            plans.append(plan)
            measures.append(measure)
        every_plan = plans if hosts else plans[0]
        loaded, reported, gated = load_duckdb(every_plan), report(every_plan), gate(every_plan)
        measures >> loaded >> reported >> gated
        if phase.baseline:
            gated >> compare_baseline(every_plan)
    return dag
