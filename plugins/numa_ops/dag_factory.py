"""Builds each phase DAG from ``include/configs/phases.yaml``; ``dags/*.py`` call this and nothing else.

discover_topology -> plan_runs -> measure (one mapped instance per lane) -> load_duckdb -> report
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import yaml
from airflow.sdk import DAG, Param, TriggerRule, task

from numa_ops import paths
from numa_ops.config import available_experiments
from numa_ops.operators import NumaLaneOperator

DEFAULT_MAX_ACTIVE_LANES = 4


def phases() -> dict[str, dict[str, Any]]:
    """The phase definitions."""
    with (paths.configs_dir() / "phases.yaml").open() as fh:
        return yaml.safe_load(fh)


def _doc(dag_id: str, phase: dict[str, Any]) -> str:
    return (
        f"# {phase['title']}\n\n**Goal:** {phase['goal']}\n\n**Research question:** {phase['question']}\n\n"
        f"Default experiment: `{phase['experiment']}`. Trigger with *experiment* and *overrides* in the "
        "seed plan's grammar, e.g. `experiment.test.num_samples=500` or `experiment.hardware.gpu_ids=[0,1]`.\n\n"
        "Results: `outputs/<folder>/results.json`, `experiment_summary.json`, `experiment.log`; "
        "DuckDB `outputs/numa_lab.duckdb` (table `runs`); report `outputs/<folder>/report/index.html`."
    )


def build_phase_dag(dag_id: str) -> DAG:
    """The DAG of phase ``dag_id``."""
    phase = phases()[dag_id]
    params = {
        "experiment": Param(
            phase["experiment"],
            type="string",
            enum=available_experiments(),
            title="Experiment",
            description="An experiment config from include/configs/.",
        ),
        "overrides": Param(
            [],
            type="array",
            items={"type": "string", "pattern": r"^experiment(\.|\[|=)[^\s;&|`$<>]*$", "maxLength": 500},
            maxItems=64,
            title="Overrides",
            description="One per line, e.g. experiment.test.num_samples=500 or experiment.hardware.gpu_ids=[0,1]",
        ),
    }
    with DAG(
        dag_id=dag_id,
        description=phase["goal"],
        doc_md=_doc(dag_id, phase),
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["numa-lab", *phase.get("tags", [])],
        params=params,
        max_active_runs=1,
        default_args={"retries": 0},
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
            topology: dict[str, Any], params: dict[str, Any] | None = None, dag_run: Any = None
        ) -> list[dict[str, Any]]:
            """Validate the request against the configs and the host; write the plan."""
            from numa_ops.pipeline import folder_name, prepare
            from numa_ops.topology import Topology

            experiment = params["experiment"]
            folder = folder_name(experiment, dag_run.run_after, token=f"{dag_run.dag_id}|{dag_run.run_id}")
            folder_path, lanes = prepare(experiment, list(params["overrides"]), Topology.from_dict(topology), folder)
            runs = sum(len(lane.runs) for lane in lanes)
            print(f"plan: {runs} runs on {len(lanes)} lane(s) into {folder_path}")
            for lane in lanes:
                print(f"  lane {lane.name}: {len(lane.runs)} runs")
            return [lane.to_dict() for lane in lanes]

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def load_duckdb(lanes: list[dict[str, Any]]) -> dict[str, Any]:
            """Write results.json and the summary; load every run record into DuckDB."""
            from numa_ops import pipeline, results

            loaded = pipeline.load(results.run_folder(lanes[0]["folder"]))
            print(f"summary: {loaded['summary']}; duckdb: {loaded['load']}")
            return loaded

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def report(lanes: list[dict[str, Any]]) -> dict[str, Any]:
            """Write this run's report and the cumulative one; say where everything is."""
            from numa_ops import pipeline, results

            where = pipeline.write_reports(results.run_folder(lanes[0]["folder"]))
            for key, value in where.items():
                print(f"{key}: {value}")
            return where

        plan = plan_runs(discover_topology())
        measure = NumaLaneOperator.partial(
            task_id="measure",
            map_index_template="{{ lane_name }}",
            max_active_tis_per_dagrun=DEFAULT_MAX_ACTIVE_LANES,
        ).expand(lane=plan)
        loaded = load_duckdb(plan)
        measure >> loaded
        loaded >> report(plan)
    return dag
