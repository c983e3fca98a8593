"""Nsight Systems around a lane's worker: on / required / absent, with a stand-in ``nsys``.

The stand-in only records its argv, writes the report file nsys would write, and runs the
command it was given; this host has no GPU for a real nsys to trace.
"""

from __future__ import annotations

import json
import stat
import sys

import pytest
from numa_ops import nsys
from numa_ops.supervise import LaneSupervisor

from tests.numa_ops.lanes import tiny_lane, with_profile, with_test

STAND_IN = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open({log!r}, "a") as fh:
    fh.write(json.dumps(args) + "\\n")
assert args[0] == "profile"
out = next(a.split("=", 1)[1] for a in args if a.startswith("--output="))
open(out + ".nsys-rep", "w").write("report")
rest = args[1:]
while rest[0].startswith("--"):  # nsys's own options come first, then the command it profiles
    rest = rest[1:]
cmd = rest
os.execv(cmd[0], cmd)
"""


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    log = tmp_path / "nsys-argv.log"
    path = tmp_path / "bin" / "nsys"
    path.parent.mkdir()
    path.write_text(STAND_IN.format(python=sys.executable, log=str(log)))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("NUMA_LAB_NSYS", str(path))
    return path, log


# These tests are about wrapping the worker, not about the host's free disk: a CI machine with
# less than the default profile.min_free_gb free would otherwise run them unprofiled.
ANY_DISK = "experiment.profile.min_free_gb=0"


def _records(folder_path, lane):
    return [json.loads((folder_path / "runs" / f"{r.run_id}.json").read_text()) for r in lane.runs]


def test_nsys_on_wraps_the_worker(configs_dir, outputs_dir, stand_in):
    nsys, log = stand_in
    folder_path, lane = tiny_lane("experiment.profile.nsys=on", ANY_DISK)
    outcome = LaneSupervisor(lane, folder_path, log=lambda _: None).run()
    assert len(outcome.succeeded) == 2
    (argv,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert argv[:3] == ["profile", "--trace=cuda,nvtx,osrt",
                        f"--output={folder_path}/nsys/{lane.name}.{argv[2].rsplit('.', 1)[1]}"]
    assert argv[4:7] == [sys.executable, "-m", "numa_ops.worker"]
    reports = list((folder_path / "nsys").glob("*.nsys-rep"))
    assert len(reports) == 1
    for rec in _records(folder_path, lane):
        assert rec["profile"]["report"] == str(reports[0]) and rec["profile"]["warning"] is None
        assert rec["profile"]["report_bytes"] == len("report")


def test_a_raw_capture_without_report_is_said(configs_dir, outputs_dir, stand_in, monkeypatch):
    nsys, _ = stand_in
    nsys.write_text(nsys.read_text().replace('".nsys-rep"', '".qdstrm"'))  # as the copy seen on the GPU hosts
    folder_path, lane = tiny_lane("experiment.profile.nsys=on", ANY_DISK)
    LaneSupervisor(lane, folder_path, log=lambda _: None).run()
    for rec in _records(folder_path, lane):
        assert rec["success"] and rec["profile"]["report"] is None
        assert "only its raw .qdstrm capture" in rec["profile"]["warning"]


def test_retention_failed_removes_reports_of_clean_workers(configs_dir, outputs_dir, stand_in):
    folder_path, lane = tiny_lane("experiment.profile.nsys=on", "experiment.profile.retention=failed", ANY_DISK)
    lines = []
    LaneSupervisor(lane, folder_path, log=lines.append).run()
    assert list((folder_path / "nsys").glob("*.nsys-rep")) == []
    assert any("removed (profile.retention=failed)" in line for line in lines)  # there was one, and it went


def test_retention_failed_keeps_the_report_of_a_worker_that_timed_out(configs_dir, outputs_dir, stand_in):
    folder_path, lane = tiny_lane("experiment.profile.nsys=on", "experiment.profile.retention=failed", ANY_DISK)
    lane = with_test(lane, 0, num_samples=10_000_000, timeout_s=2, max_trial_time_s=1)  # cannot finish in 2 s
    outcome = LaneSupervisor(lane, folder_path, log=lambda _: None).run()
    assert outcome.workers_started == 2 and len(outcome.failed) == 1
    kept = list((folder_path / "nsys").glob("*.nsys-rep"))
    assert len(kept) == 1  # the timed-out worker's report; the clean second worker's is removed
    assert _records(folder_path, lane)[1]["profile"]["report"] != str(kept[0])


def test_nsys_absent_on_runs_unprofiled_with_a_warning(configs_dir, outputs_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("NUMA_LAB_NSYS", str(tmp_path / "no-such-nsys"))
    folder_path, lane = tiny_lane("experiment.profile.nsys=on")
    lines = []
    outcome = LaneSupervisor(lane, folder_path, log=lines.append).run()
    assert len(outcome.succeeded) == 2
    for rec in _records(folder_path, lane):
        assert rec["success"] and rec["profile"]["warning"].startswith("profile.nsys=on but nsys not found")
    assert any("WARNING" in line for line in lines)


def test_nsys_absent_required_fails_every_run_clearly(configs_dir, outputs_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("NUMA_LAB_NSYS", str(tmp_path / "no-such-nsys"))
    folder_path, lane = tiny_lane("experiment.profile.nsys=required")
    outcome = LaneSupervisor(lane, folder_path, log=lambda _: None).run()
    assert outcome.workers_started == 0 and len(outcome.failed) == 2
    for rec in _records(folder_path, lane):
        assert not rec["success"] and rec["error"].startswith("profile.nsys=required: nsys not found")


def test_too_little_disk_for_reports_runs_unprofiled_with_a_warning(configs_dir, outputs_dir, stand_in):
    nsys, log = stand_in
    folder_path, lane = tiny_lane("experiment.profile.nsys=on", "experiment.profile.min_free_gb=100000")
    outcome = LaneSupervisor(lane, folder_path, log=lambda _: None).run()
    assert len(outcome.succeeded) == 2 and not log.exists()
    for rec in _records(folder_path, lane):
        assert "below profile.min_free_gb=100000" in rec["profile"]["warning"]


def test_too_little_disk_for_reports_is_refused_when_required(configs_dir, outputs_dir, stand_in):
    folder_path, lane = tiny_lane("experiment.profile.nsys=required", "experiment.profile.min_free_gb=100000")
    outcome = LaneSupervisor(lane, folder_path, log=lambda _: None).run()
    assert outcome.workers_started == 0
    assert "below profile.min_free_gb=100000" in _records(folder_path, lane)[0]["error"]


def test_each_runs_own_profile_setting_holds_in_a_lane_of_several_studies(configs_dir, outputs_dir, stand_in):
    nsys, log = stand_in
    folder_path, lane = tiny_lane(ANY_DISK)
    lane = with_profile(lane, 1, nsys="on")  # as another study's run would be
    outcome = LaneSupervisor(lane, folder_path, log=lambda _: None).run()
    assert len(outcome.succeeded) == 2 and outcome.workers_started == 2
    first, second = _records(folder_path, lane)
    assert first["profile"]["nsys"] == "off" and first["profile"].get("report") is None
    assert second["profile"]["report"].endswith(".nsys-rep")
    assert len(log.read_text().splitlines()) == 1  # only the second run's worker ran under nsys


def test_a_configured_nsys_that_is_not_executable_is_named(configs_dir, outputs_dir, monkeypatch, tmp_path):
    (tmp_path / "nsys").write_text("")  # exists, but not executable
    monkeypatch.setenv("NUMA_LAB_NSYS", str(tmp_path / "nsys"))
    folder_path, lane = tiny_lane("experiment.profile.nsys=on")
    LaneSupervisor(lane, folder_path, log=lambda _: None).run()
    for rec in _records(folder_path, lane):
        assert f"NUMA_LAB_NSYS={tmp_path / 'nsys'} is not an executable file" in rec["profile"]["warning"]


def test_newest_nsys_install_is_found_first(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMA_LAB_NSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for version in ("2024.9.1", "2024.10.2", "2023.4.4"):
        binary = tmp_path / "nsight-systems" / version / "bin" / "nsys"
        binary.parent.mkdir(parents=True)
        binary.write_text("")
    monkeypatch.setattr(nsys, "NSYS_LOCATIONS", (str(tmp_path / "nsight-systems" / "*" / "bin" / "nsys"),))
    assert nsys.find_nsys() == str(tmp_path / "nsight-systems" / "2024.10.2" / "bin" / "nsys")
