"""The typed run record: records written before it load and dump back as they were, wrong ones are refused."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from numa_ops import results
from numa_ops.record import Environment, RunMetrics, RunRecord

DATA = Path(__file__).parent / "data" / "records_before_model"
BENCH = Path(__file__).parents[2] / "bench" / "results" / "runs"
FIXTURES = sorted(DATA.glob("*.json"))
# the keys every record holds since those fixtures were written: how to reproduce the run, and a rerun's original
ADDED_SINCE = ("reproduce", "rerun_of")


def key_paths(data: object, prefix: str = "") -> set[str]:
    """Every key of ``data`` as a dotted path (lists of objects as ``[]``; maps keyed by numbers left closed)."""
    if isinstance(data, dict) and not all(k.isdigit() for k in data):
        return {p for k, v in data.items() for p in {prefix + k} | key_paths(v, prefix + k + ".")}
    if isinstance(data, list):
        return {p for item in data for p in key_paths(item, prefix + "[].")}
    return set()


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_a_record_written_before_the_model_dumps_back_as_it_was(path):
    data = json.loads(path.read_text())
    record = RunRecord.model_validate(data)
    assert record.to_json() == data
    assert json.loads(json.dumps(record.to_json())) == data  # the file's text, as jq and DuckDB read it


def test_the_gpu_records_of_the_bench_archives_load_and_dump_back_as_they_were(tmp_path):
    """Records measured on H100 and H200 hosts by earlier versions (missing settings added since, gated copies)."""
    for archive in sorted(BENCH.glob("*.tar.gz")):
        with tarfile.open(archive) as tar:
            tar.extractall(tmp_path / archive.stem, filter="data")
    files = sorted(tmp_path.glob("*/**/runs/*.json"))
    assert len(files) > 100
    gpu = 0
    for path in files:
        data = json.loads(path.read_text())
        record = results.read_record(path)
        assert record is not None and record.to_json() == data, path.name
        gpu += record.metrics is not None and record.metrics.copies == "timed"
    assert gpu > 100


def test_the_keys_every_record_holds_are_those_of_a_cpu_run_written_before_the_model_and_those_added_since():
    data = json.loads((DATA / "cpu_tiny.json").read_text())
    assert not set(ADDED_SINCE) & set(data)
    assert RunRecord.keys() == tuple(sorted([*data, *ADDED_SINCE]))
    assert RunMetrics.keys() == tuple(sorted(data["metrics"]))
    paired = json.loads((DATA / "paired_memory.json").read_text())
    assert set(paired) - set(RunRecord.keys()) == {"paired", "arms"} <= RunRecord.SOMETIMES
    assert set(paired["metrics"]) - set(RunMetrics.keys()) == {"paired"}


def test_a_setting_added_since_is_not_written_into_an_older_record():
    data = json.loads((DATA / "cpu_tiny.json").read_text())
    del data["test"]["paired_target"], data["metrics"]["regime"]
    record = RunRecord.model_validate(data)
    assert record.test is not None and record.test.paired_target == 0.02  # read with its default
    assert "paired_target" not in record.to_json()["test"] and "regime" not in record.to_json()["metrics"]


def test_unknown_keys_are_kept():
    data = json.loads((DATA / "cpu_tiny.json").read_text())
    data["from_a_newer_version"] = {"a": 1}
    data["metrics"]["new_metric"] = 2.5
    assert RunRecord.model_validate(data).to_json() == data


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d["metrics"].update(samples_per_s="fast"), "metrics.samples_per_s"),
        (lambda d: d["metrics"]["trial_samples_per_s"].update(serial=[1.0, "x"]),
         "metrics.trial_samples_per_s.serial.1"),
        (lambda d: d.update(success="maybe"), "success"),
        (lambda d: d["model"].update(depth="deep"), "model.depth"),
        (lambda d: d.pop("run_id"), "no run_id"),
    ],
    ids=["headline-not-a-number", "trial-not-a-number", "success-not-a-bool", "model-depth-not-an-int", "no-run-id"],
)
def test_a_malformed_record_is_refused_and_quarantined_with_where(tmp_path, change, where):
    data = json.loads((DATA / "cpu_tiny.json").read_text())
    change(data)
    runs = tmp_path / "f" / "runs"
    runs.mkdir(parents=True)
    (runs / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not a run record") as refused:
        results.read_record(runs / "bad.json")
    assert where in str(refused.value)
    assert results.collect(tmp_path / "f") == []
    assert where in (tmp_path / "f" / "quarantine" / "bad.json.reason.txt").read_text()


def test_the_worker_builds_the_record_it_writes(tmp_path):
    """A failed record built from a spec: the same keys as the worker's failures before the model, less what only
    the worker adds (where it ran, its traceback)."""
    from tests.numa_ops.lanes import run_spec

    record = results.failed_record(run_spec(), "boom")
    path = results.write_record(tmp_path, record)
    written = json.loads(path.read_text())
    before = json.loads((DATA / "failed_error.json").read_text())
    worker_only = {"device", "environment", "profile", "started_at", "traceback", "worker_startup_s"}
    assert set(written) == (set(before) | set(ADDED_SINCE)) - worker_only
    assert written["success"] is False and written["error"] == "boom" and written["metrics"] is None
    assert results.read_record(path) == record


def test_a_record_written_before_reproduce_says_how_to_reproduce_it_from_its_own_fields():
    """Its experiment from its model, test and placement; its versions and machine from its environment."""
    from numa_ops.config import ExperimentConfig
    from numa_ops.reproduce import VERSION_KEYS, Reproduction

    data = json.loads((DATA / "cpu_tiny.json").read_text())
    repro = Reproduction.of_record(RunRecord.model_validate(data))
    cfg = ExperimentConfig.model_validate(repro.experiment)
    assert cfg.vit_configs[0].model_dump(exclude_unset=True) == data["model"]
    assert cfg.test.batch_size == data["test"]["batch_size"] and cfg.hardware.numa_nodes == [data["pool_node"]]
    assert (repro.placement.cpu_node, repro.placement.mem_node) == (data["cpu_node"], data["mem_node"])
    assert set(repro.versions) == set(VERSION_KEYS) and repro.versions["torch"] == data["environment"]["torch"]
    assert (repro.cpu_model, repro.host) == (data["environment"]["cpu_model"], data["environment"]["host"])
    assert repro.code_version is None


def test_a_paired_record_written_before_reproduce_cannot_be_reproduced():
    data = json.loads((DATA / "paired_memory.json").read_text())
    from numa_ops.reproduce import Reproduction

    with pytest.raises(ValueError, match="paired run of a record without 'reproduce'"):
        Reproduction.of_record(RunRecord.model_validate(data))


def test_a_record_with_reproduce_dumps_back_as_it_was_written(tmp_path):
    from tests.numa_ops.lanes import run_spec

    record = results.base_record(run_spec(), Environment(torch="9.9", vit_pytorch="1.0", numactl_version="2.0.18"))
    path = results.write_record(tmp_path, record)
    written = json.loads(path.read_text())
    assert written["reproduce"]["versions"]["numactl"] == "2.0.18" and written["rerun_of"] is None
    assert results.read_record(path) == record and RunRecord.model_validate(written).to_json() == written
