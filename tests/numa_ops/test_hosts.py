"""GPU hosts (``NUMA_LAB_HOSTS``): each host's tasks on its own Celery queue, studies pinned to hosts,
and exactly today's DAG when no host is configured."""

from __future__ import annotations

import json
import socket

import pytest
from numa_ops import dag_factory, results
from numa_ops.config import ConfigError
from numa_ops.hosts import configured_hosts
from numa_ops.operators import NumaLaneOperator
from numa_ops.phases import load_phases
from numa_ops.specs import DeviceTurn

from tests.numa_ops.pinned_phases import PINNED_PHASES as PINNED
from tests.numa_ops.records import record

DAG = "phase1_framework_validation"


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


def test_a_bad_host_name_in_phases_is_refused(configs_dir):
    (configs_dir / "phases.yaml").write_text(PINNED.replace("hosts: [gpu-b]", "hosts: [gpu.b]"))
    with pytest.raises(ConfigError, match="only_b.hosts"):
        load_phases()


def test_a_lane_refuses_to_measure_on_another_host(outputs_dir):
    lane = DeviceTurn("gpu0-cpu0-mem0", "f", 0, (), host=socket.gethostname() + "-other", queue="gpu-a").to_json()
    with pytest.raises(RuntimeError, match="queue gpu-a must be served by"):
        NumaLaneOperator(task_id="measure", lane=lane).execute({})


def _night(outputs_dir, folder, samples_per_s):
    """A night's run folder with two worker processes of one nightly run measuring ``samples_per_s`` (±0.2%)."""
    for i, rate in enumerate((samples_per_s * 0.998, samples_per_s * 1.002)):
        rec = record(f"{folder}.a.r{i}", folder=folder, repeat=i, metrics={"samples_per_s": rate})
        rec["study"], rec["model"]["name"] = "nightly", "a"
        results.write_json_atomic(outputs_dir / folder / "runs" / f"{rec['run_id']}.json", rec)
    return [DeviceTurn("cpu-cpu0-mem0", folder, None, (), host="h", queue=folder.rsplit("_", 1)[-1]).to_json()]


def _compare_baseline(monkeypatch):
    monkeypatch.setenv("NUMA_LAB_HOSTS", "gpu-a,gpu-b")
    return dag_factory.build_phase_dag("nightly_sweep").get_task("compare_baseline").python_callable


def test_the_nightly_comparison_keeps_every_hosts_result(configs_dir, outputs_dir, monkeypatch):
    compare_baseline = _compare_baseline(monkeypatch)
    first = compare_baseline([_night(outputs_dir, "n1_gpu-a", 100.0), _night(outputs_dir, "n1_gpu-b", 200.0)])
    assert first == {"folders": {"n1_gpu-a": {"host": "gpu-a", "baseline": None, "verdicts": 1},
                                 "n1_gpu-b": {"host": "gpu-b", "baseline": None, "verdicts": 1}}}
    second = compare_baseline([_night(outputs_dir, "n2_gpu-a", 100.0), _night(outputs_dir, "n2_gpu-b", 200.0)])
    assert second == {"folders": {"n2_gpu-a": {"host": "gpu-a", "baseline": "n1_gpu-a", "verdicts": 1},
                                  "n2_gpu-b": {"host": "gpu-b", "baseline": "n1_gpu-b", "verdicts": 1}}}


@pytest.mark.parametrize("regressed", ["gpu-a", "gpu-b"], ids=["first-host", "last-host"])
def test_the_nightly_comparison_fails_if_any_host_regressed(configs_dir, outputs_dir, monkeypatch, regressed):
    compare_baseline = _compare_baseline(monkeypatch)
    compare_baseline([_night(outputs_dir, "n1_gpu-a", 100.0), _night(outputs_dir, "n1_gpu-b", 100.0)])
    tonight = {host: 50.0 if host == regressed else 100.0 for host in ("gpu-a", "gpu-b")}
    with pytest.raises(RuntimeError, match=f"regression against n1_{regressed}: ") as failed:
        compare_baseline([_night(outputs_dir, f"n2_{host}", rate) for host, rate in tonight.items()])
    assert "regression against n1_gpu-" + ("b" if regressed == "gpu-a" else "a") not in str(failed.value)
    for host in tonight:  # each host was compared and its verdicts kept, the regressed one's too
        (verdict,) = json.loads((outputs_dir / f"n2_{host}" / "regressions.json").read_text())
        assert verdict["verdict"] == ("regression" if host == regressed else "no change")
