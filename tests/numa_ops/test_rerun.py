"""Every record says how to reproduce it; ``python -m numa_ops rerun`` measures a run again on this host (real CPU
workers) and compares it with the original through the nightly comparison; a placement this host lacks is refused."""

from __future__ import annotations

import json
import subprocess
import sys

from numa_ops import compare, results
from numa_ops.config import ExperimentConfig
from numa_ops.plan import build_plan
from numa_ops.record import Environment
from numa_ops.reproduce import VERSION_KEYS, Reproduction
from numa_ops.rerun import rerun_config
from numa_ops.topology import discover

from tests.numa_ops.records import record


def numa_ops(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numa_ops", *args], capture_output=True, text=True, timeout=600)


def test_a_cpu_run_is_measured_again_and_compared_with_its_original(configs_dir, outputs_dir):
    done = numa_ops("run", "experiment=tiny", "experiment.test.num_samples=8", "experiment.test.repeats=2",
                    "experiment.vit_configs=[{name: tiny, patch_size: 8, depth: 1, heads: 2, dim: 32, mlp_dim: 64, "
                    "num_classes: 10}]")
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = [p for p in outputs_dir.iterdir() if (p / "runs").is_dir()]
    originals = results.collect(folder)
    assert len(originals) == 2 and all(r.success for r in originals)
    for rec in (r.to_json() for r in originals):
        assert rec["rerun_of"] is None
        assert set(rec["reproduce"]) == {"experiment", "placement", "versions", "gpu_model", "cpu_model",
                                         "code_version"}
        assert set(rec["reproduce"]["versions"]) == set(VERSION_KEYS)
        assert rec["reproduce"]["versions"]["torch"] and rec["reproduce"]["code_version"]
        assert ExperimentConfig.model_validate(rec["reproduce"]["experiment"]).vit_configs[0].name == "tiny"
    original = originals[0]

    again = numa_ops("rerun", original.run_id, "--repeats", "2", "--json")
    assert again.returncode in (0, 1), again.stderr[-3000:]  # 1 only if the CPU's speed moved beyond the interval
    (new_folder,) = [p for p in outputs_dir.iterdir() if (p / "rerun.json").is_file()]
    reruns = results.collect(new_folder)
    assert len(reruns) == 2 and all(r.success and r.rerun_of == original.run_id for r in reruns)
    assert {compare.config_key(r) for r in reruns} == {compare.config_key(original)}
    assert sorted(r.repeat for r in reruns) == [0, 1]
    summary = json.loads((new_folder / "rerun.json").read_text())
    assert summary["rerun_of"] == original.run_id
    (row,) = summary["comparisons"]
    assert (row["baseline_n"], row["candidate_n"]) == (2, 2)
    assert row["verdict"] in (compare.NO_CHANGE, compare.NOT_DETECTABLE, compare.REGRESSION, compare.IMPROVEMENT)
    assert row["low"] <= row["ratio"] <= row["high"] and row["mde"] > 0
    assert not any(line.startswith(("host", "code", "torch")) for line in summary["differences"])


def test_the_reproduce_key_plans_exactly_the_run_it_came_from(configs_dir):
    topo = discover()
    from numa_ops.config import load_experiment

    (lane,) = build_plan("f", load_experiment("tiny", ["experiment.vit_configs=[{name: t, patch_size: 8, depth: 1, "
                                                       "heads: 2, dim: 32, mlp_dim: 64}]"]), topo)
    (spec,) = lane.runs
    rec = results.base_record(spec, Environment(torch="9.9", cpu_model="a CPU")).to_json()
    assert rec["reproduce"]["versions"]["torch"] == "9.9" and rec["reproduce"]["cpu_model"] == "a CPU"
    read = results.parse_record(json.loads(json.dumps(rec)))  # as a rerun reads the record's file
    (again,) = build_plan("g", [rerun_config(Reproduction.of_record(read))], topo)
    (respec,) = again.runs
    assert (respec.model, respec.test, respec.gpu_id, respec.cpu_node, respec.mem_node, respec.placement) == (
        spec.model, spec.test, spec.gpu_id, spec.cpu_node, spec.mem_node, spec.placement)


def test_a_placement_this_host_lacks_is_refused_with_the_planners_message(configs_dir, outputs_dir):
    nodes = discover().node_ids
    absent = max(nodes) + 1
    rec = record("elsewhere.main.cpu-cpu1-mem1.tiny.0", folder="elsewhere")
    rec["reproduce"] = {
        "experiment": {"name": "tiny", "vit_configs": [{**rec["model"], "num_classes": 10}],
                       "hardware": {"gpu_ids": "all", "numa_nodes": [absent], "placement": "process"},
                       "test": {**rec["test"], "timeout_s": 120, "max_trial_time_s": 30}},
        "placement": {"gpu_id": None, "cpu_node": absent, "mem_node": absent, "placement": "remote"},
        "versions": {}, "gpu_model": None, "cpu_model": None, "code_version": None}
    results.write_json_atomic(outputs_dir / "elsewhere" / "runs" / f"{rec['run_id']}.json", rec)
    refused = numa_ops("rerun", rec["run_id"])
    assert refused.returncode == 2
    assert f"NUMA node [{absent}] not found" in refused.stderr
    assert [p.name for p in outputs_dir.iterdir()] == ["elsewhere"]  # nothing planned, nothing written


def test_an_unknown_run_is_refused(configs_dir, outputs_dir):
    refused = numa_ops("rerun", "no.such.run")
    assert refused.returncode == 2 and "no record of run 'no.such.run'" in refused.stderr
