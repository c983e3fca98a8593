"""The phase DAGs' task bodies, called as plain functions (no DAG, no scheduler)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from numa_ops import phase_tasks, results
from numa_ops.phases import load_phases
from numa_ops.specs import DeviceTurn
from numa_ops.trigger_request import TriggerRequest

from tests.numa_ops.pinned_phases import PINNED_PHASES as PINNED
from tests.numa_ops.records import record

PHASE1 = "phase1_framework_validation"
FORM = {"studies": [], "experiment": None, "overrides": [], "sweeps": [], "num_samples": None,
        "update_asset": False, "folder": None}


class _TI:
    """What the task bodies use of a TaskInstance: XCom, and the count of plan_runs instances that failed."""

    dag_id, run_id = PHASE1, "manual__1"

    def __init__(self, failed=0, refused=None):
        self.pushed, self.failed, self.refused = {}, failed, refused

    def xcom_push(self, key, value):
        self.pushed[key] = value

    def get_ti_count(self, dag_id, task_ids, run_ids, states):
        self.counted = task_ids
        return self.failed

    def xcom_pull(self, task_ids, key):
        return self.refused


def _turn(folder, queue=None, name="cpu-cpu0-mem0", lanes=()):
    """A measure task's turn as plan_runs's XCom carries it."""
    return DeviceTurn(name, folder, None, lanes, host="h" if queue else None, queue=queue).to_json()


def _dag_run(run_id="manual__1"):
    return SimpleNamespace(dag_id=PHASE1, run_id=run_id, run_after=datetime(2026, 11, 27, 1, 2, 3, tzinfo=UTC))


def _plan(host=None, ti=None, **form):
    """plan_runs for an ad-hoc tiny experiment on this machine's topology, as GPU host ``host``."""
    params = {**FORM, "experiment": "tiny", "hosts": [host] if host else None, **form}
    phase = load_phases()[PHASE1]
    return phase_tasks.plan_runs(PHASE1, phase, phase_tasks.discover_topology(), params, _dag_run(), ti or _TI(), host)


def test_pinned_studies_run_only_on_their_hosts(configs_dir):
    (configs_dir / "phases.yaml").write_text(PINNED)
    phase = load_phases()[PHASE1]
    every = TriggerRequest(studies=("everywhere", "only_b"), hosts=("gpu-a", "gpu-b"))
    assert phase_tasks.studies_on_host(phase, "gpu-a", every) == ["everywhere"]
    assert phase_tasks.studies_on_host(phase, "gpu-b", every) == ["everywhere", "only_b"]
    assert phase_tasks.studies_on_host(phase, None, every) == ["everywhere", "only_b"]  # no hosts: one host runs all
    with pytest.raises(AirflowSkipException, match="runs on host gpu-a"):
        phase_tasks.studies_on_host(phase, "gpu-a", TriggerRequest(studies=("only_b",), hosts=("gpu-a", "gpu-b")))
    with pytest.raises(AirflowSkipException, match="not chosen"):
        phase_tasks.studies_on_host(phase, "gpu-a", TriggerRequest(studies=("everywhere",), hosts=("gpu-b",)))


def test_downstream_tasks_see_every_hosts_folder():
    a = [_turn("f_gpu-a", "gpu-a"), _turn("f_gpu-a", "gpu-a", name="cpu-cpu0-mem0-r1")]
    b = [_turn("f_gpu-b", "gpu-b")]
    assert phase_tasks.planned_folders([a, None, b]) == ["f_gpu-a", "f_gpu-b"]  # None: a host that skipped
    assert phase_tasks.planned_folders(a) == ["f_gpu-a"]  # one host, as without hosts
    with pytest.raises(AirflowSkipException, match="nothing was planned"):
        phase_tasks.planned_folders([None, None])


@pytest.mark.parametrize("plans", [None, [], [None]], ids=["planning-failed", "no-turns", "host-skipped"])
def test_nothing_planned_skips_load_and_report(plans):
    for body in (phase_tasks.load_duckdb, phase_tasks.report):
        with pytest.raises(AirflowSkipException, match="see plan_runs's log"):
            body(plans)


def test_the_plans_are_parsed_into_turns(configs_dir, outputs_dir):
    (turn,) = _plan("gpu-a")
    parsed = phase_tasks.planned_turns([[turn], None, [_turn("f_gpu-b", "gpu-b")]])
    assert [(t.folder.endswith("_gpu-a"), t.queue, len(t.lanes)) for t in parsed] == [
        (True, "gpu-a", 1), (False, "gpu-b", 0)]
    assert parsed[0].lanes[0].runs[0].test.num_samples == 16  # the run's settings, validated
    assert phase_tasks.planned_turns([turn]) == parsed[:1]  # one host's plan: the same turns


@pytest.mark.parametrize(
    ("form", "host", "folder"),
    [
        pytest.param({"folder": "resume_me"}, None, "resume_me", id="resume"),
        pytest.param({"folder": "resume_me"}, "gpu-a", "resume_me_gpu-a", id="resume-on-host"),
        pytest.param({}, None, "phase1_20261127T010203_", id="new-for-the-phase"),
        pytest.param({"experiment": "tiny"}, "gpu-a", "tiny_20261127T010203_", id="new-for-the-experiment"),
    ],
)
def test_the_run_folders_name(form, host, folder):
    request = TriggerRequest.from_params({**FORM, **form})
    name = phase_tasks.run_folder_name(PHASE1, request, _dag_run(), host)
    assert name.startswith(folder) and name.endswith(f"_{host}" if host else "")
    assert name == phase_tasks.run_folder_name(PHASE1, request, _dag_run(), host)  # a retry: the same


def test_new_folders_differ_by_dag_run():
    request = TriggerRequest.from_params(FORM)
    assert phase_tasks.run_folder_name(PHASE1, request, _dag_run("a"), None) != phase_tasks.run_folder_name(
        PHASE1, request, _dag_run("b"), None)


@pytest.mark.parametrize("host", [None, "gpu-a"], ids=["one-host", "gpu-host"])
def test_plan_runs_writes_the_plan_and_names_the_host(configs_dir, outputs_dir, capsys, host):
    turns = _plan(host)
    (folder,) = phase_tasks.planned_folders(turns)
    assert (outputs_dir / folder / "plan.json").is_file() and folder.endswith(f"_{host}" if host else "")
    assert {(turn.host, turn.queue) for turn in phase_tasks.planned_turns(turns)} == {
        (phase_tasks.discover_topology()["host"], host)}
    plan = json.loads((outputs_dir / folder / "plan.json").read_text())
    assert plan["phase"] == PHASE1 and plan["params"]["experiment"] == "tiny"  # the request, as the form gave it
    assert capsys.readouterr().out.count("plan: 2 runs of 1 studies on") == 1


def test_a_devices_lanes_are_one_task_in_turn(configs_dir, outputs_dir, capsys):
    (turn,) = _plan(overrides=["experiment.test.repeats=2"])
    assert (turn["name"], [lane["name"] for lane in turn["lanes"]]) == ("cpu", ["cpu-cpu0-mem0", "cpu-cpu0-mem0-r1"])
    assert "  task cpu: lanes in turn: cpu-cpu0-mem0, cpu-cpu0-mem0-r1" in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("form", "message"),
    [
        pytest.param({"overrides": ["experiment.test.bogus=1"]}, "experiment.test.bogus: unknown key",
                     id="unknown-key"),
        pytest.param({"overrides": ["experiment.hardware.numa_nodes=[5]"]}, "NUMA node [5] not found",
                     id="absent-node"),
    ],
)
def test_a_refused_plan_fails_with_the_planners_message_last(configs_dir, outputs_dir, capsys, form, message):
    ti = _TI()
    with pytest.raises(AirflowFailException,
                       match=r"plan refused: .*" + message.replace("[", r"\[").replace("]", r"\]")):
        _plan(ti=ti, **form)
    assert message in ti.pushed["refused"]  # for the gate's last line
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("plan refused: ")
    assert not any(p.is_dir() for p in outputs_dir.iterdir())  # no run folder


def _measured(outputs_dir, turns, failed=()):
    """Records for every planned run of ``turns`` (those in ``failed`` failed)."""
    (folder,) = phase_tasks.planned_folders(turns)
    plan = json.loads((outputs_dir / folder / "plan.json").read_text())
    run_ids = list(dict.fromkeys(run["run_id"] for lane in plan["lanes"] for run in lane["runs"]))
    for i, run_id in enumerate(run_ids):
        results.write_json_atomic(outputs_dir / folder / "runs" / f"{run_id}.json",
                                  record(run_id, folder=folder, success=i not in failed))
    return turns


def test_the_gate_passes_every_host_or_fails_naming_each(configs_dir, outputs_dir, capsys):
    phase = load_phases()[PHASE1]
    a = _measured(outputs_dir, _plan("gpu-a"))
    one = phase_tasks.gate(PHASE1, phase, a)
    assert one["passed"] and list(one["folders"]) == [a[0]["folder"]]  # one host: a mapping of one folder
    b = _measured(outputs_dir, _plan("gpu-b"))
    both = phase_tasks.gate(PHASE1, phase, [a, b])
    assert both["passed"] and {f: v["planned"] for f, v in both["folders"].items()} == {
        a[0]["folder"]: 2, b[0]["folder"]: 2}
    c = _measured(outputs_dir, _plan("gpu-c"), failed=[0])
    with pytest.raises(AirflowFailException, match=f"{PHASE1} did not pass its gate: gate FAILED: 1 of 2 run"):
        phase_tasks.gate(PHASE1, phase, [a, None, c])
    last = capsys.readouterr().out.strip().splitlines()
    assert last[-2].startswith("gate passed") and last[-1].startswith("gate FAILED")  # each host's sentence, last


class _StepsTI(_TI):
    """A TaskInstance whose DAG run had the tasks ``failed_tasks`` fail."""

    def __init__(self, failed_tasks):
        super().__init__()
        self.failed_tasks = failed_tasks

    def get_ti_count(self, dag_id, task_ids, run_ids, states):
        assert dag_id == self.dag_id and run_ids == [self.run_id] and "failed" in states
        return sum(t in self.failed_tasks for t in task_ids)


def test_the_gate_fails_on_a_failed_report_even_when_every_run_succeeded(configs_dir, outputs_dir, capsys):
    phase = load_phases()[PHASE1]
    a = _measured(outputs_dir, _plan("gpu-a"))
    assert phase_tasks.failed_steps(_StepsTI(set()), ["load_duckdb", "report"]) == []
    steps = phase_tasks.failed_steps(_StepsTI({"report"}), ["load_duckdb", "report"])
    assert steps == ["report"]
    with pytest.raises(AirflowFailException, match="gate FAILED: report failed"):
        phase_tasks.gate(PHASE1, phase, a, steps)
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "gate FAILED: report failed. To do: read the failed task's log.")


@pytest.mark.parametrize(
    ("upstream", "failed", "refused", "message"),
    [
        pytest.param({"plan_runs", "report"}, 1, "GPU [7] not found", "plan_runs failed: GPU [7] not found",
                     id="refused"),
        pytest.param({"gpu-a.plan_runs", "gpu-b.plan_runs", "report"}, 1, [None, "no node 5"],
                     "plan_runs failed: no node 5", id="one-host-refused"),
        pytest.param({"gpu-a.plan_runs", "gpu-b.plan_runs"}, 2, [None, None],
                     "see the log of gpu-a.plan_runs / gpu-b.plan_runs", id="crashed"),
    ],
)
def test_the_gate_fails_first_when_planning_failed(capsys, upstream, failed, refused, message):
    phase_tasks.fail_if_nothing_was_planned(_TI(0, None), upstream)  # planned: the gate runs
    ti = _TI(failed, refused)
    with pytest.raises(AirflowFailException, match="nothing was planned"):
        phase_tasks.fail_if_nothing_was_planned(ti, upstream)
    assert ti.counted == sorted(t for t in upstream if t.endswith("plan_runs"))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert message in last and last.endswith("so the gate fails")


def _night(outputs_dir, folder, samples_per_s, queue=None):
    """A night's run folder: two worker processes of one nightly run measuring ``samples_per_s`` (±0.2%)."""
    for i, rate in enumerate((samples_per_s * 0.998, samples_per_s * 1.002)):
        rec = record(f"{folder}.a.r{i}", folder=folder, repeat=i, metrics={"samples_per_s": rate})
        rec["study"], rec["model"]["name"] = "nightly", "a"
        results.write_json_atomic(outputs_dir / folder / "runs" / f"{rec['run_id']}.json", rec)
    return [_turn(folder, queue)]


def test_compare_baseline_on_one_host(configs_dir, outputs_dir, capsys):
    nightly = load_phases()["nightly_sweep"]
    assert phase_tasks.compare_baseline("nightly_sweep", nightly, _night(outputs_dir, "n1", 100.0)) == {
        "folders": {"n1": {"host": None, "baseline": None, "verdicts": 1}}}
    assert phase_tasks.compare_baseline("nightly_sweep", nightly, _night(outputs_dir, "n2", 101.0)) == {
        "folders": {"n2": {"host": None, "baseline": "n1", "verdicts": 1}}}
    with pytest.raises(RuntimeError, match="regression against n2: "):
        phase_tasks.compare_baseline("nightly_sweep", nightly, _night(outputs_dir, "n3", 50.0))
    assert "n3: baseline: n2" in capsys.readouterr().out


def test_compare_baseline_keeps_each_hosts_series(configs_dir, outputs_dir):
    nightly = load_phases()["nightly_sweep"]
    hosts = [_night(outputs_dir, "n1_gpu-a", 100.0, "gpu-a"), _night(outputs_dir, "n1_gpu-b", 50.0, "gpu-b")]
    phase_tasks.compare_baseline("nightly_sweep", nightly, hosts)
    # gpu-b measures half of gpu-a every night: no regression, as each host is compared with its own nights
    hosts = [_night(outputs_dir, "n2_gpu-a", 100.0, "gpu-a"), _night(outputs_dir, "n2_gpu-b", 50.0, "gpu-b")]
    compared = phase_tasks.compare_baseline("nightly_sweep", nightly, hosts)
    baselines = {c["host"]: c["baseline"] for c in compared["folders"].values()}
    assert baselines == {"gpu-a": "n1_gpu-a", "gpu-b": "n1_gpu-b"}


@pytest.mark.parametrize(
    ("form", "message"),
    [
        pytest.param({"num_sample": 500}, "unknown field(s) 'num_sample' in the DAG run's conf; the form's fields are: "
                     "studies, experiment, overrides, sweeps, num_samples, update_asset, folder", id="unknown-key"),
        pytest.param({"experiment": None, "studies": []}, "no study chosen", id="no-study"),
        pytest.param({"num_samples": "500"}, "field 'num_samples' must be a whole number or null", id="samples-text"),
        pytest.param({"overrides": "experiment.test.batch_size=2"}, "field 'overrides' must be a list of strings",
                     id="overrides-not-a-list"),
        pytest.param({"folder": "report"}, "outputs/report is numa-lab's own (the all-runs report)", id="report"),
        pytest.param({"folder": "numa_lab.duckdb"}, "outputs/numa_lab.duckdb is numa-lab's own", id="database"),
        pytest.param({"folder": "latest.json"}, "outputs/latest.json is numa-lab's own", id="latest"),
        pytest.param({"folder": "notes.txt"}, "outputs/notes.txt exists and is not a run folder", id="a-file"),
        pytest.param({"folder": "other"}, "is a run folder of phase2_numa_locality, not of", id="other-phase"),
    ],
)
def test_a_bad_form_is_refused_before_anything_is_written(configs_dir, outputs_dir, capsys, form, message):
    (outputs_dir / "notes.txt").write_text("mine")
    results.write_json_atomic(outputs_dir / "other" / "plan.json", {"phase": "phase2_numa_locality"})
    before = sorted(p.name for p in outputs_dir.rglob("*"))
    ti = _TI()
    with pytest.raises(AirflowFailException, match="plan refused: ") as refused:
        _plan(ti=ti, **form)
    assert message in str(refused.value) and message in ti.pushed["refused"]
    printed = [line for line in capsys.readouterr().out.strip().splitlines() if not line.startswith("topology: ")]
    assert printed == [f"plan refused: {ti.pushed['refused']}"]  # the plan_runs task's one line
    assert sorted(p.name for p in outputs_dir.rglob("*")) == before


def test_a_run_folder_of_the_phase_is_resumed(configs_dir, outputs_dir):
    (folder,) = phase_tasks.planned_folders(_plan(folder="mine"))
    assert folder == "mine"
    assert phase_tasks.planned_folders(_plan(folder="mine")) == ["mine"]


def test_a_plan_over_budget_is_marked_refused_and_says_so_first(configs_dir, outputs_dir, capsys):
    phase = load_phases()[PHASE1].model_copy(update={"max_gpu_hours": 1e-6})
    ti = _TI()
    params = {**FORM, "experiment": "tiny", "folder": "costly"}
    with pytest.raises(AirflowFailException, match="over its max_gpu_hours"):
        phase_tasks.plan_runs(PHASE1, phase, phase_tasks.discover_topology(), params, _dag_run(), ti)
    lines = [line for line in capsys.readouterr().out.strip().splitlines() if not line.startswith("topology: ")]
    sentence = f"plan refused: {ti.pushed['refused']}"
    assert lines[0] == sentence and lines[-1] == sentence and any(line.startswith("estimate: ") for line in lines)
    marked = json.loads((outputs_dir / "costly" / phase_tasks.REFUSED).read_text())
    assert marked == {"sentence": sentence, "dag_run": "manual__1", "refused_at": marked["refused_at"]}
    phase_tasks.plan_runs(PHASE1, load_phases()[PHASE1], phase_tasks.discover_topology(), params, _dag_run(), ti)
    assert not (outputs_dir / "costly" / phase_tasks.REFUSED).exists()  # resumed within budget: no longer refused
ROLE_PHASES = """
phase1_framework_validation:
  title: t
  goal: g
  question: q
  studies:
    tiny: {experiment: tiny}
    on_every_gpu: {experiment: tiny, role: every_gpu}
    gpu_pairs: {experiment: tiny, role: gpus_alone_then_pairs}
"""


def test_a_study_the_host_cannot_give_is_skipped_with_its_reason_and_the_phase_passes(configs_dir, outputs_dir, capsys):
    """On a host without GPU (a fake one: this test means the same on a GPU host) the role studies are skipped: the
    estimate, plan.json, the summary, the report and the gate's log say so and why; what could run, ran."""
    from numa_ops.topology import NumaNode, Topology

    (configs_dir / "phases.yaml").write_text(ROLE_PHASES)
    phase = load_phases()[PHASE1]
    topology = Topology("cpu-host", [NumaNode(0, [0], None)], [], {0: [10]}).to_dict()
    form = {**FORM, "studies": ["tiny", "on_every_gpu", "gpu_pairs"]}
    turns = _measured(outputs_dir, phase_tasks.plan_runs(PHASE1, phase, topology, form, _dag_run(), _TI()))
    (folder,) = phase_tasks.planned_folders(turns)
    lines = ["study on_every_gpu (every GPU) skipped: cpu-host has no GPU: the phase's other studies run on the CPU",
             "study gpu_pairs (every GPU alone, then the first GPU paired with each other) skipped: cpu-host has no "
             "GPU: a pair needs two"]
    planned = capsys.readouterr().out.splitlines()
    assert [line.strip() for line in planned if "skipped:" in line] == lines  # in the estimate, in the order planned
    assert planned.index("  " + lines[0]) > next(i for i, line in enumerate(planned) if line.startswith("estimate: "))
    skipped = json.loads((outputs_dir / folder / "plan.json").read_text())["skipped_studies"]
    assert [(s["study"], s["role"]) for s in skipped] == [("on_every_gpu", "every_gpu"),
                                                          ("gpu_pairs", "gpus_alone_then_pairs")]
    assert json.loads((outputs_dir / folder / "estimate.json").read_text())["skipped_studies"] == skipped
    assert phase_tasks.load_duckdb(turns)["summary"]["successful_runs"] == 2
    assert json.loads((outputs_dir / folder / "experiment_summary.json").read_text())["skipped_studies"] == skipped
    phase_tasks.report(turns)
    page = (outputs_dir / folder / "report" / "index.html").read_text()
    assert ("Study gpu_pairs was not run: this host cannot give it every GPU alone, then the first GPU paired with "
            "each other (cpu-host has no GPU: a pair needs two).") in page
    capsys.readouterr()
    assert phase_tasks.gate(PHASE1, phase, turns)["passed"]
    log = capsys.readouterr().out.strip().splitlines()
    assert [line.strip() for line in log if "skipped:" in line] == lines and log[-1].startswith("gate passed")


def test_a_phase_whose_every_chosen_study_is_skipped_is_refused(configs_dir, outputs_dir, capsys):
    from numa_ops.topology import NumaNode, Topology

    (configs_dir / "phases.yaml").write_text(ROLE_PHASES)
    topology = Topology("cpu-host", [NumaNode(0, [0], None)], [], {0: [10]}).to_dict()
    ti = _TI()
    with pytest.raises(AirflowFailException,
                       match="plan refused: no chosen study can run on cpu-host: study gpu_pairs"):
        phase_tasks.plan_runs(PHASE1, load_phases()[PHASE1], topology, {**FORM, "studies": ["gpu_pairs"]}, _dag_run(),
                              ti)
    assert "a pair needs two" in ti.pushed["refused"]
