"""Two timed lanes never share a device, across processes; lanes on different GPUs do overlap."""

from __future__ import annotations

import json
import subprocess
import sys

HOLD = """
import json, sys, time
from numa_ops.supervise import device_lock
lane = {{"name": "l", "gpu_id": {gpu}, "cpu_node": 0, "runs": []}}
with device_lock(lane, print):
    start = time.time(); time.sleep(1.0); end = time.time()
print(json.dumps([start, end]))
"""


def _hold_all(gpus):
    procs = [subprocess.Popen([sys.executable, "-c", HOLD.format(gpu=g)], stdout=subprocess.PIPE, text=True) for g in gpus]
    return [json.loads(p.communicate(timeout=60)[0].strip().splitlines()[-1]) for p in procs]


def _overlap(a, b):
    return a[0] < b[1] and b[0] < a[1]


def test_same_gpu_never_overlaps(outputs_dir):
    a, b, c = _hold_all([0, 0, 0])
    assert not _overlap(a, b) and not _overlap(b, c) and not _overlap(a, c)


def test_different_gpus_overlap(outputs_dir):
    a, b = _hold_all([0, 1])
    assert _overlap(a, b)
