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
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, AssetAlias, Param, TaskGroup, TriggerRule, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from numa_ops.config import ConfigError, available_experiments
from numa_ops.hosts import configured_hosts
from numa_ops.operators import NumaLaneOperator
from numa_ops.phases import Phase, load_phases
from numa_ops.trigger_form import FORMAT as OVERRIDE_FORMAT  # checked where the plugin registers it (API server)

# Overrides never reach a shell (argv lists only); shell characters are refused anyway. Plain spaces
# are allowed, as the override grammar allows them inside lists and mappings: [{name: t, depth: 2}].
OVERRIDE_PATTERN = r"^experiment(\.|\[|=)[^\t\n\r\f\v;&|`$<>]*$"


def phase_asset(dag_id: str) -> Asset:
    """The Asset a phase updates when it passes its gate."""
    return Asset(name=dag_id, uri=f"numa-lab://phases/{dag_id}")


def phase_alias(dag_id: str) -> AssetAlias:
    """The gate's outlet: through it the gate updates the phase's Asset only for a run of the phase itself."""
    return AssetAlias(name=f"{dag_id}_gate")


def _doc(dag_id: str, phase: Phase, phases: dict[str, Phase] | None = None) -> str:
    studies = "\n".join(
        f"- `{name}`: `experiment={s.experiment}` {' '.join(f'`{o}`' for o in s.overrides)}"
        + (f" (zipped: {s.zip})" if s.zip else "")
        for name, s in phase.studies.items()
    )
    after = ", ".join(f"`{a}`" for a in phase.after) or "nothing (trigger by hand)"
    if phase.schedule:
        after = f"the schedule `{phase.schedule}`"
    nxt = [name for name, p in (phases or {}).items() if dag_id in p.after]
    starts = (
        f"a passing run of the phase as defined here (all its studies, no ad-hoc experiment, overrides, sweeps or "
        f"num_samples) updates the Asset `{dag_id}`, which starts {', '.join(f'`{n}`' for n in nxt)} "
        "(a phase with several Assets before it starts once each has been updated). An ad-hoc run updates it only "
        "with `update_asset: true` in the form."
        if nxt else f"nothing starts after this phase (its Asset `{dag_id}` is updated by a passing run of the phase as defined)."
    )
    return (
        f"# {phase.title}\n\n**Goal:** {phase.goal}\n\n**Research question:** {phase.question}\n\n"
        f"**Starts after:** {after}. Triggering by hand works too.\n\n**Starts next:** {starts}\n\n"
        "**Fails** when planning is refused (the reason is the last line of `plan_runs`'s log), or when the gate "
        "fails (failed or missing runs, intervals too wide: the last line of `gate`'s log).\n\n"
        f"**Studies** (the plan's commands):\n{studies}\n\n"
        f"**Gate:** failure rate <= {phase.gate.max_failure_rate:.0%}, every run's 95% CI half-width <= "
        f"{phase.gate.max_ci_half_width:.0%} of its samples/s.\n\n"
        "Results: `outputs/<folder>/results.json`, `experiment_summary.json`, `experiment.log`; "
        "DuckDB `outputs/numa_lab.duckdb` (table `runs`, views `numa_penalty`); report `outputs/<folder>/report/index.html`."
    )


def _lanes(plans: list[Any] | None) -> list[dict[str, Any]]:
    """Every lane of ``plans``: one host's measure units, or a list of each host's (None where a host skipped).

    A unit is a lane, or one GPU's lanes (``lanes``) where the plan has multi-GPU patterns.
    ``plans`` is None when planning failed (Airflow passes None for a failed task's XCom).
    """
    units = [unit for plan in plans or [] if plan for unit in (plan if isinstance(plan, list) else [plan])]
    return [lane for unit in units for lane in unit.get("lanes", [unit])]


def _folders(plans: list[Any] | None) -> list[str]:
    """The run folders of ``plans``, one per host, in order; skips the task when nothing was planned."""
    folders = list(dict.fromkeys(lane["folder"] for lane in _lanes(plans)))
    if not folders:
        raise AirflowSkipException("nothing was planned (plan_runs failed, or no host had a study to run): "
                                   "see plan_runs's log for the reason")
    return folders


def _studies_on(phase: Phase, host: str | None, params: dict[str, Any]) -> list[str]:
    """The chosen studies that run on ``host``; skips the host's tasks when it has none (or was not chosen)."""
    if host is None:
        return params["studies"]
    if host not in (params.get("hosts") or []):
        raise AirflowSkipException(f"host {host} was not chosen in the trigger form")
    if params.get("experiment"):
        return params["studies"]
    wanted = params["studies"] or list(phase.studies)
    pinned = {name: study.hosts for name, study in phase.studies.items() if study.hosts}
    chosen = [s for s in wanted if host in pinned.get(s, [host])]
    if not chosen:
        raise AirflowSkipException(f"none of the chosen studies ({', '.join(wanted)}) runs on host {host}")
    return chosen


def _refuse(exc: Exception) -> None:
    """Fail planning with the planner's message as the task log's last line (no retry would change it)."""
    from airflow.sdk import get_current_context

    get_current_context()["ti"].xcom_push(key="refused", value=str(exc))  # for the gate's own last line
    print(f"plan refused: {exc}")
    raise AirflowFailException(f"plan refused: {exc}") from None


def _fail_if_nothing_was_planned(context: Any) -> None:
    """The gate's pre-execute hook: planning failed (on any host), so nothing it asked for was measured.

    The gate runs whatever its upstream did (ALL_DONE); without this it would skip, and a DAG run whose
    leaves skipped is green. It fails instead, its log ending with the planner's message.
    """
    ti = context["ti"]
    plan_ids = sorted(t for t in context["task"].upstream_task_ids if t.rsplit(".", 1)[-1] == "plan_runs")
    failed = ti.get_ti_count(
        dag_id=ti.dag_id, task_ids=plan_ids, run_ids=[ti.run_id], states=["failed", "upstream_failed"]
    )
    if not failed:
        return
    refused = ti.xcom_pull(task_ids=plan_ids, key="refused")
    refused = [r for r in (refused if isinstance(refused, list) else [refused]) if r]
    reason = " ".join(refused) or f"see the log of {' / '.join(plan_ids)}"
    message = f"nothing was planned (plan_runs failed: {reason}); nothing was measured, so the gate fails"
    print(message)
    raise AirflowFailException(message)


def _update_asset(dag_id: str, phase: Phase, hosts: list[str], context: Any, result: Any = None) -> None:
    """The gate's post-execute hook (it passed): update the phase's Asset if the run is the phase as defined.

    A run that is not (an ad-hoc experiment, a subset of its studies, overrides, sweeps, a num_samples)
    updates nothing, and so starts no later phase, unless its form says ``update_asset: true``.
    """
    params = context["params"]
    reasons = not_the_phase(phase, params, hosts)
    if reasons and not params.get("update_asset"):
        print(
            f"not the phase as phases.yaml defines it ({'; '.join(reasons)}): the Asset {dag_id} is not updated "
            "and no later phase starts (update_asset: true in the form updates it anyway)"
        )
        return
    context["outlet_events"][phase_alias(dag_id)].add(phase_asset(dag_id))
    print(f"Asset {dag_id} updated" + (f" on request (update_asset: true; {'; '.join(reasons)})" if reasons else ""))


def not_the_phase(phase: Phase, params: dict[str, Any], hosts: list[str] | None = None) -> list[str]:
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


def _on_host(unit: dict[str, Any], topology: dict[str, Any], queue: str | None) -> dict[str, Any]:
    """A measure unit (and its lanes) naming the host whose topology it was planned on, and that host's queue."""
    where = {"host": topology["host"], "queue": queue}
    if "lanes" in unit:
        return {**unit, **where, "lanes": [{**lane, **where} for lane in unit["lanes"]]}
    return {**unit, **where}


def _params(phase: Phase, hosts: list[str] | None = None) -> dict[str, Param]:
    experiments = [None, *available_experiments()]
    # format first: the planner's own message for what it refuses without the host (numa_ops.trigger_form)
    override_list = {"type": "string", "format": OVERRIDE_FORMAT, "pattern": OVERRIDE_PATTERN, "maxLength": 500}
    params = {
        "studies": Param(
            list(phase.studies),
            type="array",
            items={"type": "string", "enum": list(phase.studies)},
            uniqueItems=True,
            title="Studies",
            description="Which of the phase's studies (the plan's commands) to run.",
        ),
        "experiment": Param(
            None,
            type=["null", "string"],
            enum=experiments,
            title="Experiment (ad hoc)",
            description="If set, run this experiment with the overrides below instead of the studies.",
        ),
        "overrides": Param(
            [], type="array", items=override_list, maxItems=64, title="Overrides",
            description="One per line, e.g. experiment.hardware.gpu_ids=[0,3]; added to every study.",
        ),
        "sweeps": Param(
            [], type="array", items=override_list, maxItems=16, title="Sweeps",
            description="e.g. experiment.test.batch_size=4,8,16,32 (cartesian over keys).",
        ),
        "num_samples": Param(
            None, type=["null", "integer"], minimum=1, maximum=10_000_000, title="num_samples",
            description="Shortcut for experiment.test.num_samples.",
        ),
        "update_asset": Param(
            False, type="boolean", title="Update the phase's Asset",
            description="Only a run of the phase as defined (all its studies, no experiment, overrides, sweeps or "
            "num_samples) updates its Asset, which starts the phases after it; tick this to update it anyway.",
        ),
        "folder": Param(
            None, type=["null", "string"], pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", title="Resume folder",
            description="Re-use this run folder: runs already complete there are skipped.",
        ),
    }
    if hosts:
        params["hosts"] = Param(
            list(hosts), type="array", items={"type": "string", "enum": list(hosts)}, uniqueItems=True,
            title="Hosts", description="GPU hosts to run on (each measures on its own GPUs, into <folder>_<host>).",
        )
        params["folder"].description = "Re-use the run folders <folder>_<host>: runs already complete there are skipped."
    return params


def build_phase_dag(dag_id: str) -> DAG:
    """The DAG of phase ``dag_id``."""
    phases = load_phases()
    phase = phases[dag_id]
    hosts = configured_hosts()
    for study_name, study in phase.studies.items():
        unknown = [h for h in study.hosts if hosts and h not in hosts]
        if unknown:
            raise ConfigError(f"phases.yaml: {dag_id}.studies.{study_name}.hosts: {unknown} not in NUMA_LAB_HOSTS ({', '.join(hosts)})")
    schedule = phase.schedule or [phase_asset(a) for a in phase.after] or None
    with DAG(
        dag_id=dag_id,
        description=phase.goal,
        doc_md=_doc(dag_id, phase, phases),
        schedule=schedule,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["numa-lab", *phase.tags],
        params=_params(phase, hosts),
        max_active_runs=1,
        default_args={"retries": 0},
        # a cron-scheduled sweep would start at once on its first unpause; it waits for a person instead
        is_paused_upon_creation=True if phase.schedule else None,
    ) as dag:

        @task
        def discover_topology() -> dict[str, Any]:
            """Read the host's NUMA nodes and GPUs."""
            from numa_ops.topology import discover

            topo = discover()
            for note in topo.notes:
                print(f"topology: {note}")
            return topo.to_dict()

        @task
        def plan_runs(
            topology: dict[str, Any], host: str | None = None, params: dict[str, Any] | None = None, dag_run: Any = None
        ) -> list[dict[str, Any]]:
            """Validate the request against the phase's studies and the host; write the plan."""
            from numa_ops.paths import safe_name
            from numa_ops.phases import study_configs
            from numa_ops.pipeline import OutputsError, folder_name, write_plan
            from numa_ops.plan import count_runs, measure_units
            from numa_ops.topology import Topology

            extra = [*params["overrides"], *params["sweeps"]]
            if params.get("num_samples"):
                extra.append(f"experiment.test.num_samples={int(params['num_samples'])}")
            try:
                studies = study_configs(phase, _studies_on(phase, host, params), extra, params.get("experiment") or None)
            except ValueError as exc:  # the planner's refusal (config, override, path) ends the log; no retry changes it
                _refuse(exc)
            name = params.get("experiment") or dag_id.split("_")[0]
            folder = safe_name(params["folder"], "folder") if params.get("folder") else folder_name(
                name, dag_run.run_after, token=f"{dag_run.dag_id}|{dag_run.run_id}"
            )
            if host:
                folder = safe_name(f"{folder}_{host}", "folder")
            request = {"phase": dag_id, "params": dict(params)}
            try:
                folder_path, lanes = write_plan(folder, studies, Topology.from_dict(topology), request)
                units = measure_units(lanes, phase.max_lanes)
            except (ValueError, OutputsError) as exc:  # host-dependent refusals (an absent GPU or node) end it too
                _refuse(exc)
            runs = count_runs(lanes)
            print(f"plan: {runs} runs of {len(studies)} studies on {len(lanes)} lane(s) into {folder_path}")
            for study, configs in studies.items():
                print(f"  study {study}: {len(configs)} sweep point(s)")
            for lane in lanes:
                print(f"  lane {lane.name}: {len(lane.runs)} runs")
            for unit in units:
                if "lanes" in unit:  # a device's lanes, one task, in the plan's order (repeats ABBA, patterns)
                    print(f"  task {unit['name']}: lanes in turn: {', '.join(lane['name'] for lane in unit['lanes'])}")
            return [_on_host(unit, topology, host) for unit in units]

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def load_duckdb(lanes: list[Any]) -> dict[str, Any]:
            """Write each host's results.json and summary; load every run record into DuckDB, once."""
            from numa_ops import pipeline, results

            folders = _folders(lanes)
            loaded = pipeline.load([results.run_folder(folder) for folder in folders])
            for folder, summary in loaded.get("summaries", {folders[0]: loaded["summary"]}).items():
                print(f"{folder}: summary: {summary}")
            print(f"duckdb: {loaded['load']}")
            return loaded

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def report(lanes: list[Any]) -> dict[str, Any]:
            """Write each host's report and the cumulative one; say where everything is."""
            from numa_ops import pipeline, results

            where = pipeline.write_reports([results.run_folder(folder) for folder in _folders(lanes)])
            for key, value in where.items():
                print(f"{key}: {value}")
            return where

        @task(
            outlets=[phase_alias(dag_id)],
            trigger_rule=TriggerRule.ALL_DONE,
            pre_execute=_fail_if_nothing_was_planned,
            post_execute=functools.partial(_update_asset, dag_id, phase, hosts),
        )
        def gate(lanes: list[Any]) -> dict[str, Any]:
            """Fail the phase (and hold back the next ones) if too many runs failed or are too noisy."""
            from numa_ops import results
            from numa_ops.gate import check

            verdicts = [check(results.run_folder(folder), phase.gate) for folder in _folders(lanes)]
            for verdict in verdicts:
                print(verdict["summary"])
                for line in verdict["problems"]:
                    print(f"  {line}")
            for verdict in verdicts:  # last in the log: what failed and what to do, in one sentence each
                print(verdict["sentence"])
            failed = [v["sentence"] for v in verdicts if not v["passed"]]
            if failed:  # no retry: measuring the same runs again in place would not change the verdict
                raise AirflowFailException(f"{dag_id} did not pass its gate: {' '.join(failed)}")
            return verdicts[0] if len(verdicts) == 1 else {"passed": True, "hosts": verdicts}

        @task
        def compare_baseline(lanes: list[Any]) -> dict[str, Any]:
            """Compare tonight with the baseline night; a regression outside both CIs fails the run."""
            from numa_ops import nightly, paths, results

            problems, out = [], {}
            queues = {lane["folder"]: lane.get("queue") for lane in _lanes(lanes)}
            for folder in _folders(lanes):
                host_queue = queues[folder]
                key = f"{dag_id}@{host_queue}" if host_queue else dag_id  # each host is compared with its own nights
                checked = nightly.check(results.run_folder(folder), key, phase.baseline, host_queue)
                print(f"{folder}: baseline: {checked['baseline'] or 'none yet: this night becomes the baseline'}")
                for v in checked["verdicts"]:
                    print(f"  {v['verdict']:12} {v['config']}: {v['tonight_mean']} vs {v['baseline_mean']} ({v['change']})")
                problems.extend(checked["problems"])
                out = {"baseline": checked["baseline"], "verdicts": len(checked["verdicts"])}
            if problems:
                raise RuntimeError(f"{'; '.join(problems)} (see {paths.outputs_dir()} and table regressions)")
            return out

        if not hosts:
            plan: Any = plan_runs(discover_topology())
            measures = [
                NumaLaneOperator.partial(
                    task_id="measure",
                    map_index_template="{{ lane_name }}",
                    max_active_tis_per_dagrun=phase.max_lanes,
                ).expand(lane=plan)
            ]
        else:  # one task group per GPU host, on the Celery queue named for it
            plan, measures = [], []
            for host in hosts:
                with TaskGroup(group_id=host, tooltip=f"discover, plan and measure on {host} (queue {host})"):
                    host_plan = plan_runs.override(queue=host)(discover_topology.override(queue=host)(), host=host)
                    measures.append(
                        NumaLaneOperator.partial(
                            task_id="measure",
                            queue=host,
                            map_index_template="{{ lane_name }}",
                            max_active_tis_per_dagrun=phase.max_lanes,
                        ).expand(lane=host_plan)
                    )
                plan.append(host_plan)
        loaded = load_duckdb(plan)
        reported = report(plan)
        gated = gate(plan)
        measures >> loaded
        loaded >> reported >> gated
        if phase.baseline:
            gated >> compare_baseline(plan)
    return dag
