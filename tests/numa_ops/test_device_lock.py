"""Two timed lanes never share a device, across processes; lanes on different GPUs do overlap."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from filelock import FileLock
from numa_ops.specs import Lane
from numa_ops.supervise import device_lock

from tests.numa_ops.lanes import run_spec

HOLD = """
import json, sys, time
from numa_ops.specs import Lane
from numa_ops.supervise import device_lock
lane = Lane("l", "f", {gpu}, 0, 0, 1, ())
with device_lock(lane, print):
    start = time.time(); time.sleep(1.0); end = time.time()
print(json.dumps([start, end]))
"""


def _hold_all(gpus):
    procs = [subprocess.Popen([sys.executable, "-c", HOLD.format(gpu=g)], stdout=subprocess.PIPE, text=True)
             for g in gpus]
    return [json.loads(p.communicate(timeout=60)[0].strip().splitlines()[-1]) for p in procs]


def _overlap(a, b):
    return a[0] < b[1] and b[0] < a[1]


def test_same_gpu_never_overlaps(outputs_dir):
    a, b, c = _hold_all([0, 0, 0])
    assert not _overlap(a, b) and not _overlap(b, c) and not _overlap(a, c)


def test_different_gpus_overlap(outputs_dir):
    a, b = _hold_all([0, 1])
    assert _overlap(a, b)


def _lane(*share_gpu):
    return Lane("l", "f", 0, 0, 0, 1, tuple(run_spec(f"f.s.gpu0-cpu0-mem0.t{i}", "gpu0-cpu0-mem0", gpu_id=0,
                                                     share_gpu=s)
                                             for i, s in enumerate(share_gpu)))


def test_a_lane_whose_runs_all_share_the_gpu_takes_no_lock(outputs_dir):
    held = FileLock(str(outputs_dir / ".locks" / "gpu0.lock"))
    (outputs_dir / ".locks").mkdir(parents=True, exist_ok=True)
    with held:
        with device_lock(_lane(True, True), print):
            pass  # entered while another lane holds the GPU


def test_a_lane_mixing_shared_and_exclusive_runs_takes_the_lock(outputs_dir):
    (outputs_dir / ".locks").mkdir(parents=True, exist_ok=True)
    held = FileLock(str(outputs_dir / ".locks" / "gpu0.lock"))
    held.acquire()
    waiting, entered = threading.Event(), threading.Event()

    def lane():
        with device_lock(_lane(True, False), lambda line: waiting.set() if "waiting for gpu0" in line else None):
            entered.set()

    thread = threading.Thread(target=lane)
    thread.start()
    assert waiting.wait(timeout=60)
    assert not entered.is_set()
    held.release()
    thread.join(timeout=60)
    assert entered.is_set()
