"""What a plan will cost: past records against the cost model, the refusal over max_gpu_hours, the dry run,
and shared-out runs longest first."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import duckdb
import pytest
from filelock import FileLock
from numa_ops import db, estimate, phase_tasks
from numa_ops.config import load_experiment
from numa_ops.phases import load_phases
from numa_ops.plan import build_plan
from numa_ops.roles import resolve_studies
from numa_ops.specs import distinct_runs
from numa_ops.topology import Gpu, NumaNode, Topology, discover

from tests.numa_ops.fake_sysfs import make_sysfs

H100 = "NVIDIA H100 80GB HBM3"


def _host(gpus: int = 4, name: str = H100) -> Topology:
    nodes = [NumaNode(i, list(range(8 * i, 8 * i + 8)), 64_000) for i in range(max(gpus, 1))]
    return Topology("h", nodes, [Gpu(i, name, f"0000:{16 + i:02x}:00.0", i) for i in range(gpus)],
                    {i: [10 if i == j else 21 for j in range(len(nodes))] for i in range(len(nodes))}, "nvml")


@pytest.fixture
def cpu_host(tmp_path):
    return discover(make_sysfs(tmp_path / "s", {0: "0-3"}, {}), use_nvml=False)


def _lanes(configs_dir, topo, *overrides, run_seconds=None):
    return build_plan("f", {"main": load_experiment("tiny", list(overrides))}, topo, run_seconds=run_seconds)


def _plant(database, specs, seconds, startup_s=3.0, gpu_name=None):
    """Rows of ``runs`` in a real DuckDB file (the shipped schema), one per spec, each ``seconds`` long."""
    con = duckdb.connect(str(database))
    db.ensure_schema(con)
    for i, spec in enumerate(specs):
        key = dict(zip(estimate.KEY_COLUMNS, estimate.record_key(spec, gpu_name), strict=True))
        row = {"run_id": f"r{i}", "success": True, "duration_s": seconds, "worker_startup_s": startup_s, **key}
        con.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    con.close()


def test_past_records_set_the_estimate_where_they_match(configs_dir, tmp_path, cpu_host):
    lanes = _lanes(configs_dir, cpu_host)
    specs = distinct_runs(lanes)
    database = tmp_path / "numa_lab.duckdb"
    _plant(database, specs[:1], seconds=100.0, startup_s=7.0)  # the first model only
    records = estimate.read_past_records(database)
    cost = estimate.estimate_plan(lanes, 1, {}, records)
    model = estimate.model_run_seconds(specs[1])
    assert cost.from_records == 1
    assert cost.gpu_s == pytest.approx(100.0 + model)
    assert cost.startup_s == pytest.approx(7.0)  # the lane's start-up as recorded
    assert cost.wall_s == pytest.approx(7.0 + 100.0 + model)  # one lane: start, then its runs in turn
    kept = cost.to_json()  # as the report measures it: from the first run's start
    assert (kept["wall_s"], kept["wall_from_start_s"]) == (round(100.0 + model, 1), round(cost.wall_s, 1))
    assert kept["per_run"] == [{"run_id": specs[0].run_id, "gpu_s": 100.0, "basis": "records"},
                               {"run_id": specs[1].run_id, "gpu_s": round(model, 1), "basis": "model"}]
    assert "past records for 1 of 2 runs" in cost.basis and "the cost model for the rest" in cost.basis


@pytest.mark.parametrize(("planted", "gpu_name", "matched"), [
    pytest.param("cuda", H100, True, id="same-gpu"),
    pytest.param("cuda", "NVIDIA A100-SXM4-40GB", False, id="other-gpu"),
], )
def test_records_match_on_the_gpus_name(configs_dir, tmp_path, planted, gpu_name, matched):
    topo = _host(1)
    lanes = _lanes(configs_dir, topo, "experiment.hardware.gpu_ids=[0]")
    database = tmp_path / "numa_lab.duckdb"
    _plant(database, distinct_runs(lanes), seconds=50.0, gpu_name=gpu_name)
    cost = estimate.estimate_plan(lanes, 1, estimate.gpu_names_of(topo), estimate.read_past_records(database))
    assert (cost.from_records == 2) == matched
    assert (cost.gpu_s == pytest.approx(100.0)) == matched


def test_without_records_the_cost_model_and_why(configs_dir, tmp_path, cpu_host):
    lanes = _lanes(configs_dir, cpu_host)
    cost = estimate.estimate_plan(lanes, 1, {}, estimate.read_past_records(tmp_path / "none.duckdb"))
    assert cost.from_records == 0 and cost.basis.startswith("cost model (no results database (none.duckdb) yet)")
    assert cost.gpu_s == pytest.approx(sum(estimate.model_run_seconds(s) for s in distinct_runs(lanes)))
    assert (cost.runs, cost.lanes, cost.worker_starts) == (2, 1, 1)


def test_a_busy_database_is_not_waited_for(configs_dir, tmp_path, cpu_host):
    database = tmp_path / "numa_lab.duckdb"
    lanes = _lanes(configs_dir, cpu_host)
    _plant(database, distinct_runs(lanes), seconds=100.0)
    with FileLock(db.lock_path(database)):  # a load holds the store
        records = estimate.read_past_records(database, lock_timeout_s=0.05)
    assert records.durations == {} and "busy" in records.note
    assert estimate.estimate_plan(lanes, 1, {}, records).basis.startswith("cost model (the results database is busy")


@pytest.mark.parametrize(("execution", "compile_model", "longer"), [
    pytest.param("eager", True, True, id="compile-adds-its-time"),
    pytest.param("cuda_graph", False, False, id="graph-launch-is-cheaper"),
])
def test_the_cost_model_follows_execution(configs_dir, execution, compile_model, longer):
    spec = distinct_runs(_lanes(configs_dir, _host(1), "experiment.hardware.gpu_ids=[0]",
                                "experiment.test.num_samples=4096", "experiment.test.min_trial_s=0"))[1]
    other = replace(spec, test=spec.test.model_copy(update={"execution": execution, "compile_model": compile_model}))
    assert (estimate.model_run_seconds(other) > estimate.model_run_seconds(spec)) == longer


def test_more_samples_cost_more_once_a_pass_outlasts_min_trial_s(configs_dir):
    spec = distinct_runs(_lanes(configs_dir, _host(1), "experiment.hardware.gpu_ids=[0]"))[0]
    small, big = (replace(spec, test=spec.test.model_copy(update={"num_samples": n, "min_trial_s": 0.0}))
                  for n in (1000, 100_000))
    assert estimate.model_run_seconds(big) > 10 * estimate.model_run_seconds(small) / 2


def test_wall_time_runs_gpus_in_parallel_up_to_max_lanes(configs_dir):
    topo = _host(4)
    lanes = _lanes(configs_dir, topo, "experiment.hardware.gpu_ids=[0,1,2,3]")
    four = estimate.estimate_plan(lanes, 4, estimate.gpu_names_of(topo))
    one = estimate.estimate_plan(lanes, 1, estimate.gpu_names_of(topo))
    assert four.gpu_s == pytest.approx(one.gpu_s)
    assert four.wall_s == pytest.approx(one.wall_s / 4)  # four identical GPUs' lanes at once, or one after another


def _spread(configs_dir, topo, run_seconds):
    return _lanes(configs_dir, topo, "experiment.hardware.gpu_ids=[0,1]", "experiment.hardware.spread=true",
                  "experiment.test.num_samples=16,256,64,1024,32,512", run_seconds=run_seconds)


def test_shared_out_runs_go_longest_first(configs_dir):
    lanes = _spread(configs_dir, _host(2), estimate.model_run_seconds)
    for lane in lanes:
        seconds = [estimate.model_run_seconds(s) for s in lane.runs]
        assert seconds == sorted(seconds, reverse=True)
    assert [s.run_id for s in lanes[0].runs] == [s.run_id for s in lanes[1].runs]  # every lane walks one order


def test_without_durations_the_plans_order_stays(configs_dir):
    planned = [s.test.num_samples for s in _spread(configs_dir, _host(2), None)[0].runs]
    assert planned[::2] == [16, 256, 64, 1024, 32, 512]  # two models per sweep point, in the order given


def test_longest_first_ends_the_lanes_together(configs_dir):
    """The same shared-out runs in plan order and longest first: the GPUs end closer together."""
    topo = _host(2)
    ends = {}
    for name, order in (("plan", None), ("longest", estimate.model_run_seconds)):
        cost = estimate.estimate_plan(_spread(configs_dir, topo, order), 2, estimate.gpu_names_of(topo))
        ends[name] = max(cost.lane_end_s.values()) - min(cost.lane_end_s.values())
    assert ends["longest"] < ends["plan"]


def test_over_max_gpu_hours_is_refused_naming_both(configs_dir, cpu_host):
    cost = estimate.estimate_plan(_lanes(configs_dir, cpu_host), 1, {})
    with pytest.raises(estimate.OverBudget) as refused:
        estimate.check_budget(cost, 1e-6, "phase1_framework_validation")
    message = str(refused.value)
    assert f"{cost.gpu_hours:.2f} GPU-hours" in message and "max_gpu_hours of 1e-06" in message
    estimate.check_budget(cost, None, "no limit")
    estimate.check_budget(cost, 1.0, "under its limit")


def test_plan_runs_keeps_the_estimate_and_refuses_over_the_limit(configs_dir, outputs_dir, capsys):
    phase = load_phases()["phase1_framework_validation"]
    params = {"studies": [], "experiment": "tiny", "overrides": [], "sweeps": [], "num_samples": None,
              "update_asset": False, "folder": None, "hosts": None}
    dag_run = SimpleNamespace(run_after=__import__("datetime").datetime(2026, 1, 1), dag_id="d", run_id="r")
    pushed = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.__setitem__(key, value))
    turns = phase_tasks.plan_runs("phase1_framework_validation", phase, phase_tasks.discover_topology(), params,
                                  dag_run, ti)
    (folder,) = phase_tasks.planned_folders(turns)
    kept = json.loads((outputs_dir / folder / "estimate.json").read_text())
    assert (kept["runs"] == 2 and kept["gpu_s"] > 0 and kept["wall_s"] > 0
            and kept["max_gpu_hours"] == phase.max_gpu_hours)
    assert "estimate: 2 runs on 1 lane(s), 1 worker start(s)" in capsys.readouterr().out

    from airflow.sdk.exceptions import AirflowFailException

    tight = phase.model_copy(update={"max_gpu_hours": 1e-6})
    with pytest.raises(AirflowFailException, match=r"GPU-hours .* over its max_gpu_hours of 1e-06"):
        phase_tasks.plan_runs("phase1_framework_validation", tight, phase_tasks.discover_topology(),
                              {**params, "folder": "refused"}, dag_run, ti)
    assert "max_gpu_hours" in pushed["refused"]
    assert not list((outputs_dir / "refused" / "runs").glob("*.json"))  # nothing measured


def test_dry_run_prints_the_estimate_and_runs_nothing(configs_dir, outputs_dir):
    result = subprocess.run([sys.executable, "-m", "numa_ops", "run", "--dry-run", "experiment=tiny"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "dry run: 2 runs on 1 lane(s)" in out and "estimate: 2 runs on 1 lane(s), 1 worker start(s)" in out
    from numa_ops.topology import discover

    device = "GPU" if discover().gpus else "CPU"  # no "GPU time" on a host without a GPU
    assert f"{device} time" in out and f"{device}-hours" in out and "wall time" in out
    assert "worker" not in result.stderr and list(outputs_dir.iterdir()) == []  # no run folder, no records, no database


@pytest.mark.parametrize(("args", "dry"), [
    pytest.param(["--dry-run", "experiment=e", "-m"], True, id="dry-run"),
    pytest.param(["experiment=e"], False, id="measure"),
])
def test_dry_run_is_a_flag_not_an_override(args, dry):
    from numa_ops.cli import parse_run_args

    assert parse_run_args(args) == (["experiment=e"], [], dry, None)


def test_every_phase_has_a_limit_its_own_plan_fits(configs_dir):
    """At phases.yaml's settings on a 4-GPU H100 host, each phase's estimate is under its max_gpu_hours."""
    topo = _host(4)
    for name, phase in load_phases().items():
        assert phase.max_gpu_hours is not None, name
        lanes = build_plan(name, resolve_studies(phase, topo).configs, topo, run_seconds=estimate.model_run_seconds)
        cost = estimate.estimate_plan(lanes, phase.max_lanes, estimate.gpu_names_of(topo))
        assert 0 < cost.gpu_hours < phase.max_gpu_hours, name
