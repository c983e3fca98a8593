"""On a simulated 2-GPU, 2-node host, four lanes started at once (as Airflow does with max_lanes > 1):
the run records show no two runs overlapping on one GPU, and runs on different GPUs overlapping.

The host has no GPU, so the workers measure on the CPU with ``NUMA_LAB_FAKE_GPU=1`` (their records
say ``fake_gpu: true`` and ``device: cpu``) and run unbound (the simulated nodes do not exist here),
with one intra-op thread each (two workers share this host's cores).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime

from numa_ops import pipeline
from numa_ops.supervise import LaneSupervisor
from numa_ops.topology import discover

from tests.numa_ops.fake_sysfs import make_sysfs


def _span(rec):
    return datetime.fromisoformat(rec["started_at"]), datetime.fromisoformat(rec["finished_at"])


def _overlap(a, b):
    return a[0] < b[1] and b[0] < a[1]


def test_no_two_runs_share_a_gpu(configs_dir, outputs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NUMA_LAB_FAKE_GPU", "1")
    monkeypatch.setenv("NUMA_LAB_NUMACTL", "off")
    monkeypatch.setenv("NUMA_LAB_TORCH_THREADS", "1")  # two CPU workers share this host's cores
    topo = discover(make_sysfs(tmp_path / "sys", {0: "0", 1: "1"}, {"0000:3b:00.0": 0, "0000:af:00.0": 1}),
                    use_nvml=False)
    folder_path, lanes = pipeline.prepare("tiny", [
        # runs of several seconds: longer than start-up jitter
        "experiment.hardware.numa_nodes=[0,1]", "experiment.test.num_samples=4096",
        "experiment.test.min_trials=3", "experiment.test.max_trials=3",
        "experiment.vit_configs=[{name:t,patch_size:8,depth:2,heads:2,dim:64,mlp_dim:128}]",
    ], topo)
    assert [lane.name for lane in lanes] == ["gpu0-cpu0-mem0", "gpu0-cpu1-mem1", "gpu1-cpu0-mem0", "gpu1-cpu1-mem1"]
    threads = [threading.Thread(target=LaneSupervisor(lane, folder_path, log=lambda _: None).run) for lane in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    recs = [json.loads(p.read_text()) for p in (folder_path / "runs").glob("*.json")]
    assert len(recs) == 4 and all(r["success"] and r["fake_gpu"] and r["device"] == "cpu" for r in recs)
    by_gpu = {g: [_span(r) for r in recs if r["gpu_id"] == g] for g in (0, 1)}
    assert not _overlap(*by_gpu[0]) and not _overlap(*by_gpu[1])
    assert any(_overlap(a, b) for a in by_gpu[0] for b in by_gpu[1])
