"""Run folder names: made once, read back by the same module (the UI, the nightly baseline, the DAG tasks)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from numa_ops import run_folder
from numa_ops.run_folder import FolderName

WHEN = datetime(2026, 11, 29, 6, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("host", [None, "gpu-a"], ids=["one-host", "per-host"])
def test_a_dag_runs_folder_is_read_back_as_made(host):
    token = run_folder.dag_run_token("phase1_framework_validation", "manual__1")
    folder = run_folder.on_host(run_folder.make("phase1", WHEN, token), host)
    parsed = FolderName.parse(folder)
    assert parsed is not None and (parsed.name, parsed.host, parsed.when) == ("phase1", host, WHEN)
    assert parsed.made_for(token)
    assert not parsed.made_for(run_folder.dag_run_token("phase1_framework_validation", "manual__2"))


def test_a_retry_gets_the_same_name_and_another_invocation_another():
    token = run_folder.dag_run_token("nightly_sweep", "scheduled__x")
    assert run_folder.make("nightly", WHEN, token) == run_folder.make("nightly", WHEN, token)
    assert run_folder.make("nightly", WHEN, token) != run_folder.make("nightly", WHEN, token + "y")


@pytest.mark.parametrize("name", ["latest.json", "report", "phase1_2026_abcdef", "x_20261129T060000_ABCDEF"],
                         ids=["file", "plain", "short-time", "upper-hex"])
def test_a_name_it_did_not_make_is_not_read(name):
    assert FolderName.parse(name) is None


def test_an_unsafe_name_is_refused():
    with pytest.raises(ValueError, match="run folder"):
        run_folder.make("../etc", WHEN)
