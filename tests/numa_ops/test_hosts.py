"""GPU hosts (``NUMA_LAB_HOSTS``): each host's tasks on its own Celery queue, studies pinned to hosts,
and exactly today's DAG when no host is configured."""

from __future__ import annotations

import socket

import pytest
from airflow.sdk.exceptions import AirflowSkipException
from numa_ops import dag_factory
from numa_ops.config import ConfigError
from numa_ops.hosts import configured_hosts
from numa_ops.operators import NumaLaneOperator
from numa_ops.phases import load_phases

DAG = "phase1_framework_validation"
PINNED = """
phase1_framework_validation:
  title: t
  goal: g
  question: q
  studies:
    everywhere: {experiment: tiny}
    only_b: {experiment: tiny, hosts: [gpu-b]}
"""


def test_no_hosts_by_default(monkeypatch):
    monkeypatch.delenv("NUMA_LAB_HOSTS", raising=False)
    assert configured_hosts() == []
    monkeypatch.setenv("NUMA_LAB_HOSTS", " gpu-a, gpu-b ,")
    assert configured_hosts() == ["gpu-a", "gpu-b"]


@pytest.mark.parametrize("value", ["gpu.a", "a b", "-x", "gpu-a,gpu-a", "x" * 64])
def test_bad_host_lists_are_refused(monkeypatch, value):
    monkeypatch.setenv("NUMA_LAB_HOSTS", value)
    with pytest.raises(ConfigError, match="NUMA_LAB_HOSTS"):
        configured_hosts()


def test_without_hosts_the_dag_is_unchanged(configs_dir, monkeypatch):
    monkeypatch.delenv("NUMA_LAB_HOSTS", raising=False)
    dag = dag_factory.build_phase_dag(DAG)
    assert set(dag.task_ids) == {"discover_topology", "plan_runs", "measure", "load_duckdb", "report", "gate"}
    assert {t.queue for t in dag.tasks} == {"default"}
    assert "hosts" not in dag.params


def test_each_host_gets_its_tasks_on_its_queue(configs_dir, monkeypatch):
    monkeypatch.setenv("NUMA_LAB_HOSTS", "gpu-a,gpu-b")
    dag = dag_factory.build_phase_dag(DAG)
    for host in ("gpu-a", "gpu-b"):
        for name in ("discover_topology", "plan_runs", "measure"):
            assert dag.get_task(f"{host}.{name}").queue == host
        assert dag.get_task(f"{host}.measure").upstream_task_ids == {f"{host}.plan_runs"}
        assert dag.get_task(f"{host}.plan_runs").upstream_task_ids == {f"{host}.discover_topology"}
    for name in ("load_duckdb", "report", "gate"):
        assert dag.get_task(name).queue == "default"
    assert dag.get_task("load_duckdb").upstream_task_ids == {
        "gpu-a.plan_runs", "gpu-b.plan_runs", "gpu-a.measure", "gpu-b.measure"}
    assert dag.params["hosts"] == ["gpu-a", "gpu-b"]


def test_a_study_pinned_to_an_unknown_host_is_refused(configs_dir, monkeypatch):
    (configs_dir / "phases.yaml").write_text(PINNED)
    monkeypatch.setenv("NUMA_LAB_HOSTS", "gpu-a")
    with pytest.raises(ConfigError, match=r"only_b.hosts: \['gpu-b'\] not in NUMA_LAB_HOSTS"):
        dag_factory.build_phase_dag(DAG)


def test_pinned_studies_run_only_on_their_hosts(configs_dir, monkeypatch):
    (configs_dir / "phases.yaml").write_text(PINNED)
    phase = load_phases()[DAG]
    every = {"studies": ["everywhere", "only_b"], "hosts": ["gpu-a", "gpu-b"]}
    assert dag_factory._studies_on(phase, "gpu-a", every) == ["everywhere"]
    assert dag_factory._studies_on(phase, "gpu-b", every) == ["everywhere", "only_b"]
    assert dag_factory._studies_on(phase, None, every) == ["everywhere", "only_b"]  # no hosts: one host runs all
    with pytest.raises(AirflowSkipException, match="runs on host gpu-a"):
        dag_factory._studies_on(phase, "gpu-a", {"studies": ["only_b"], "hosts": ["gpu-a", "gpu-b"]})
    with pytest.raises(AirflowSkipException, match="not chosen"):
        dag_factory._studies_on(phase, "gpu-a", {"studies": ["everywhere"], "hosts": ["gpu-b"]})


def test_a_bad_host_name_in_phases_is_refused(configs_dir):
    (configs_dir / "phases.yaml").write_text(PINNED.replace("hosts: [gpu-b]", "hosts: [gpu.b]"))
    with pytest.raises(ConfigError, match="only_b.hosts"):
        load_phases()


def test_downstream_tasks_see_every_hosts_folder():
    a = [{"folder": "f_gpu-a", "queue": "gpu-a"}, {"folder": "f_gpu-a", "queue": "gpu-a"}]
    b = [{"folder": "f_gpu-b", "queue": "gpu-b"}]
    assert dag_factory._folders([a, None, b]) == ["f_gpu-a", "f_gpu-b"]  # None: a host that skipped
    assert dag_factory._folders(a) == ["f_gpu-a"]  # one host, as without hosts
    with pytest.raises(AirflowSkipException, match="nothing was planned"):
        dag_factory._folders([None, None])


def test_a_lane_refuses_to_measure_on_another_host(outputs_dir):
    lane = {"name": "gpu0-cpu0-mem0", "folder": "f", "runs": [], "host": socket.gethostname() + "-other", "queue": "gpu-a"}
    with pytest.raises(RuntimeError, match="queue gpu-a must be served by"):
        NumaLaneOperator(task_id="measure", lane=lane).execute({})
