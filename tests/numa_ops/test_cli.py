"""``python -m numa_ops run``: the plan without Airflow, and its refusals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import live_workers


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "numa_ops", "run", *args], capture_output=True, text=True, timeout=600)


def test_run_without_airflow(configs_dir, outputs_dir):
    result = run_cli("experiment=tiny", "experiment.test.num_samples=8")
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = [p for p in outputs_dir.iterdir() if (p / "runs").is_dir()]
    rows = json.loads((folder / "results.json").read_text())
    assert [r["test"]["num_samples"] for r in rows] == [8, 8]
    assert all(r["success"] for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["experiment=quick_test", "experiment.hardware.gpu_ids=[7]"], "GPU [7] not found",
                     id="absent-gpu"),
        pytest.param(["experiment=quick_test", "experiment.hardware.numa_nodes=[5]"], "NUMA node [5] not found",
                     id="absent-node"),
        pytest.param(["experiment=quick_test", "experiment.test.batch_size=-1"],
                     "experiment.test.batch_size: Input should be greater", id="negative-batch"),
        pytest.param(["experiment=quick_test", "experiment.test.nope=1"], "experiment.test.nope: unknown key",
                     id="unknown-key"),
        pytest.param(["experiment=quick_test", "experiment.test.batch_size=["], "malformed value", id="malformed"),
        pytest.param(["experiment=no_such"], "unknown experiment 'no_such'", id="unknown-experiment"),
        pytest.param(["experiment=../../etc/passwd"], "is not allowed", id="traversal"),
    ],
)
def test_bad_input_is_refused_before_any_run(configs_dir, outputs_dir, args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert list(outputs_dir.iterdir()) == []  # nothing was written


def test_outputs_not_writable_is_refused_before_any_run(configs_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NUMA_LAB_OUTPUTS", str(blocker / "outputs"))
    result = run_cli("experiment=tiny")
    assert result.returncode == 2 and "is not writable" in result.stderr and "nothing was started" in result.stderr


def test_outputs_disk_too_full_is_refused_before_any_run(configs_dir, outputs_dir, monkeypatch):
    monkeypatch.setenv("NUMA_LAB_MIN_FREE_MB", str(10**12))
    result = run_cli("experiment=tiny")
    assert result.returncode == 2 and "below NUMA_LAB_MIN_FREE_MB" in result.stderr
    assert not any(outputs_dir.iterdir())


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--zip", ""], id="empty"),
        pytest.param(["--zip"], id="no-value"),
        pytest.param(["--zip="], id="empty-equals"),
        pytest.param(["--zip", "experiment.test.batch_size"], id="one-key"),
        pytest.param(["--zip=experiment.test.batch_size,experiment.test.batch_size"], id="one-key-twice"),
        pytest.param(["--zip", " , "], id="only-commas"),
    ],
)
def test_zip_without_two_keys_is_refused_when_parsed(args):
    from numa_ops.cli import UsageError, parse_run_args

    with pytest.raises(UsageError, match="--zip needs two or more keys: --zip KEY1,KEY2"):
        parse_run_args(["experiment=quick_test", "experiment.test.batch_size=4,8", *args])


def test_zip_with_two_keys_is_a_group():
    from numa_ops.cli import parse_run_args

    assert parse_run_args(["experiment=e", "--zip", "a.b, c.d", "--zip=e.f,g.h"]) == (
        ["experiment=e"], [["a.b", "c.d"], ["e.f", "g.h"]], False, None)
    assert parse_run_args(["experiment=e", "--folder", "f1", "--dry-run"]) == (["experiment=e"], [], True, "f1")


def test_zip_without_two_keys_is_refused_by_the_command(configs_dir, outputs_dir):
    result = run_cli("experiment=quick_test", "experiment.test.batch_size=4,8", "--zip", "")
    assert result.returncode == 2
    assert "--zip needs two or more keys: --zip KEY1,KEY2" in result.stderr
    assert "different lengths" not in result.stderr


def _latest(outputs_dir, folder):
    from numa_ops import pipeline, results

    summary = {"successful_runs": 2, "failed_runs": 0, "missing_runs": 0, "planned_runs": 2}
    each = {key: str(folder / name) for key, name in (
        ("results_json", "results.json"), ("experiment_summary_json", "experiment_summary.json"),
        ("experiment_log", "experiment.log"), ("report", "report/index.html"))}
    info = {"folders": {folder.name: {"folder": str(folder), **each, "summary": summary}},
            "duckdb": str(outputs_dir / "numa_lab.duckdb"), "report_all_runs": str(outputs_dir / "report/index.html"),
            "summary": summary}
    results.write_json_atomic(outputs_dir / pipeline.LATEST, info)


def test_where_refuses_a_latest_json_of_an_older_shape(outputs_dir, capsys):
    from numa_ops import cli, pipeline, results

    results.write_json_atomic(outputs_dir / pipeline.LATEST, {"results_json": "x/results.json", "summary": {}})
    assert cli.where(None) == 1
    assert "is from an older numa-lab; run the phase again" in capsys.readouterr().err


@pytest.mark.parametrize(("passed", "rc"), [(True, 0), (False, 1)], ids=["gate-passed", "gate-failed"])
def test_where_ends_with_the_gates_sentence(outputs_dir, capsys, passed, rc):
    from numa_ops import cli, results

    folder = outputs_dir / "quick_test_1"
    _latest(outputs_dir, folder)
    sentence = "gate passed: 2 run(s)." if passed else "gate FAILED: 1 run(s) too noisy (...). To do: rerun."
    results.write_json_atomic(folder / "gate.json", {"passed": passed, "sentence": sentence, "summary": "s"})
    assert cli.where(None) == rc
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == sentence


def test_run_help_names_the_dry_run():
    result = subprocess.run([sys.executable, "-m", "numa_ops", "run", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "--dry-run" in result.stdout
def test_where_names_the_studies_this_host_skipped_before_the_gates_sentence(outputs_dir, capsys):
    from numa_ops import cli, results

    folder = outputs_dir / "phase6_1"
    _latest(outputs_dir, folder)
    skipped = {"study": "multi_gpu_patterns", "role": "gpus_alone_then_pairs",
               "reason": "h has 1 GPU: a pair needs two"}
    results.write_json_atomic(folder / "experiment_summary.json", {"skipped_studies": [skipped]})
    results.write_json_atomic(folder / "gate.json", {"passed": True, "sentence": "gate passed.", "summary": "s"})
    assert cli.where(None) == 0
    out = capsys.readouterr().out.rstrip().splitlines()
    assert ("  study multi_gpu_patterns (every GPU alone, then the first GPU paired with each other) skipped: h has 1 "
            "GPU: a pair needs two") in out[:-1] and out[-1] == "gate passed."


def test_a_phase_dry_run_shows_what_this_host_skips_and_why(configs_dir, outputs_dir, capsys, monkeypatch):
    """``run --dry-run --phase``: the phase's runs and estimate on this host, and each skipped study with its reason."""
    from numa_ops import cli
    from numa_ops.topology import NumaNode, Topology

    (configs_dir / "phases.yaml").write_text(
        "phase1_framework_validation:\n  title: t\n  goal: g\n  question: q\n  studies:\n"
        "    tiny: {experiment: tiny}\n    pairs: {experiment: tiny, role: gpus_alone_then_pairs}\n")
    monkeypatch.setattr(cli, "discover", lambda: Topology("cpu-host", [NumaNode(0, [0], None)], [], {0: [10]}))
    assert cli.run(["--dry-run", "--phase", "phase1_framework_validation"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("dry run of phase1_framework_validation: 2 runs of 1 studies on 1 lane(s)")
    assert out[-1] == ("  study pairs (every GPU alone, then the first GPU paired with each other) skipped: cpu-host "
                       "has no GPU: a pair needs two")
    assert any(line.startswith("estimate: 2 runs") for line in out)
    assert any(line.startswith("  CPU time ") for line in out)  # a host without a GPU spends CPU time
    assert not any(outputs_dir.iterdir())  # nothing written
    assert cli.run(["--dry-run", "--phase", "phase1_framework_validation", "experiment.hardware.gpu_ids=[1]"]) == 2
    assert "GPU [1] not found" in capsys.readouterr().err
    assert cli.run(["--dry-run", "--phase", "nope"]) == 2
    assert "unknown phase 'nope'; phases: phase1_framework_validation" in capsys.readouterr().err


def test_run_resumes_its_folder_keeping_finished_runs(configs_dir, outputs_dir):
    """``--folder NAME`` again after a run: the finished runs are kept (not measured again), the summary counts them."""
    first = run_cli("experiment=tiny", "experiment.test.num_samples=8", "--folder", "night1")
    assert first.returncode == 0, first.stderr[-3000:]
    records = sorted((outputs_dir / "night1" / "runs").glob("*.json"))
    assert len(records) == 2
    (records[1]).unlink()  # as if the machine was lost before the second run finished
    kept = records[0].read_bytes()
    again = run_cli("experiment=tiny", "experiment.test.num_samples=8", "--folder=night1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert records[0].read_bytes() == kept and records[1].is_file()
    summary = json.loads((outputs_dir / "night1" / "experiment_summary.json").read_text())
    assert (summary["planned_runs"], summary["successful_runs"]) == (2, 2)


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        pytest.param("phase1_x", "is a run folder of phase1_framework_validation, not of an experiment run",
                     id="other-phase"),
        pytest.param("report", "is numa-lab's own", id="reserved"),
        pytest.param("../elsewhere", "is not allowed", id="traversal"),
        pytest.param("", "--folder needs a run folder's name", id="empty"),
    ],
)
def test_a_folder_that_is_not_this_runs_is_refused(configs_dir, outputs_dir, folder, message):
    (outputs_dir / "phase1_x" / "runs").mkdir(parents=True)
    (outputs_dir / "phase1_x" / "plan.json").write_text(
        json.dumps({"phase": "phase1_framework_validation", "lanes": []}))
    result = run_cli("experiment=tiny", f"--folder={folder}")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert sorted(p.name for p in outputs_dir.iterdir()) == ["phase1_x"]


def _as_from_a_terminal() -> None:
    """Ctrl-C reaches the command as from a terminal, however the tests were started (a shell's background job
    ignores SIGINT, and a child inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stopped_run_ends_its_worker_and_records_the_kill(configs_dir, outputs_dir, sig):
    """The command stopped while measuring: no worker outlives it, its runs are recorded as killed (so that
    ``--folder`` measures them again), it says how to go on and exits 128 + the signal."""
    proc = subprocess.Popen([sys.executable, "-m", "numa_ops", "run", "experiment=tiny", "--folder", "night",
                             "experiment.test.num_samples=10000000", "experiment.test.timeout_s=900",
                             "experiment.test.max_trial_time_s=600"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_terminal)
    log = outputs_dir / "night" / "experiment.log"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (log.is_file() and '"event": "start"' in log.read_text()):
        time.sleep(1)
    assert live_workers(outputs_dir), "no worker was measuring"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err[-3000:]
    name = signal.Signals(sig).name
    assert f"killed: the command was stopped ({name})" in err and "with --folder night" in err
    deadline = time.monotonic() + 30  # the group was SIGKILLed; give the kernel time to reap it
    while time.monotonic() < deadline and live_workers(outputs_dir):
        time.sleep(1)
    assert not live_workers(outputs_dir), "a worker outlived the stopped command"
    records = [json.loads(p.read_text()) for p in (outputs_dir / "night" / "runs").glob("*.json")]
    assert len(records) == 2 and not any(r["success"] for r in records)
    assert {r["error"] for r in records} == {f"killed: the command was stopped ({name})"}
