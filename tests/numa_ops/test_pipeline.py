"""Finishing a phase: each folder's results, one DuckDB load, each folder's report and one cumulative report."""

from __future__ import annotations

import json

from numa_ops import db, pipeline, report, results

from tests.numa_ops import planted
from tests.numa_ops.records import record


def _host_folder(outputs_dir, name, host, runs=("a", "b")):
    folder = outputs_dir / name
    for model in runs:
        planted.write(folder, record(f"{name}.{model}"))
    results.write_json_atomic(folder / "topology.json", {"host": host, "nodes": [{}], "gpus": [], "notes": []})
    return folder


def _counting(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    return calls


def test_several_hosts_load_once_and_latest_names_every_folder(outputs_dir, monkeypatch):
    a = _host_folder(outputs_dir, "n_gpu-a", "host-a")
    b = _host_folder(outputs_dir, "n_gpu-b", "host-b", runs=("a",))
    loads = _counting(monkeypatch, db, "load_runs")
    reports = _counting(monkeypatch, report, "write_report")

    loaded = pipeline.summarize_and_load([a, b])
    assert len(loads) == 1 and loaded["load"]["inserted"] == 3
    assert (a / "results.json").is_file() and (b / "experiment_summary.json").is_file()
    assert {k: v["successful_runs"] for k, v in loaded["summaries"].items()} == {"n_gpu-a": 2, "n_gpu-b": 1}
    assert loaded["summary"]["successful_runs"] == 3

    where = pipeline.write_reports([a, b])
    titles = [k["folder"] if "folder" in k else None for _, k in reports]
    assert titles == ["n_gpu-a", "n_gpu-b", None]  # each folder's report, then the cumulative one once
    assert reports[-1][1]["topology"] is None  # two hosts: no one host's notes on the all-runs page
    latest = json.loads((outputs_dir / pipeline.LATEST).read_text())
    assert latest == json.loads(json.dumps(where))
    assert list(latest["folders"]) == ["n_gpu-a", "n_gpu-b"]  # in order
    assert [f["folder"] for f in latest["folders"].values()] == [str(a), str(b)]
    assert [f["results_json"] for f in latest["folders"].values()] == [str(a / "results.json"), str(b / "results.json")]
    assert [f["report"] for f in latest["folders"].values()] == [str(a / "report" / "index.html"),
                                                                 str(b / "report" / "index.html")]
    assert latest["report_all_runs"] == str(outputs_dir / "report" / "index.html")
    assert latest["summary"]["successful_runs"] == 3
    assert {k: f["summary"]["successful_runs"] for k, f in latest["folders"].items()} == {"n_gpu-a": 2, "n_gpu-b": 1}
    assert (a / "report" / "index.html").is_file() and (b / "report" / "index.html").is_file()


def test_one_folder_has_the_same_shape(outputs_dir):
    a = _host_folder(outputs_dir, "n1", "host-a")
    loaded = pipeline.summarize_and_load(a)
    assert set(loaded) == {"summaries", "summary", "load"} and loaded["summaries"] == {"n1": loaded["summary"]}
    assert loaded["summary"]["successful_runs"] == 2
    assert pipeline.summarize_and_load([a])["summaries"] == loaded["summaries"]  # a list of one folder: the same
    where = pipeline.write_reports(a)
    assert set(where) == {"folders", "duckdb", "report_all_runs", "summary"} and list(where["folders"]) == ["n1"]
    assert set(where["folders"]["n1"]) == {"folder", *pipeline.FOLDER_FILES, "summary"}
    assert where["folders"]["n1"]["results_json"] == str(a / "results.json")
    assert json.loads((outputs_dir / pipeline.LATEST).read_text()) == where


def test_where_prints_every_hosts_folder(outputs_dir, capsys):
    from numa_ops import cli

    a = _host_folder(outputs_dir, "n_gpu-a", "host-a")
    b = _host_folder(outputs_dir, "n_gpu-b", "host-b", runs=("a",))
    pipeline.summarize_and_load([a, b])
    pipeline.write_reports([a, b])
    assert cli.where(None) == 0
    out = capsys.readouterr().out
    for folder in (a, b):
        assert f"results_json             {folder / 'results.json'}\n" in out
    assert f"{a / 'results.json'} {b / 'results.json'}\n" in out  # the jq example reads both
    assert "runs: 3 succeeded, 0 failed" in out  # added up over the hosts
