"""The CPU-speed control on every core this process may use, six rounds 0.3 s apart.

Shows which vCPUs are fast, slow, or flipping between the two (``python3 bench/cpu_speed_by_core.py``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from numa_ops.worker.launch_thread import control_rate  # noqa: E402


def main() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    rows: dict[int, list[float]] = {c: [] for c in cpus}
    for _ in range(6):
        for cpu in cpus:
            os.sched_setaffinity(0, {cpu})
            control_rate(1)
            rows[cpu].append(control_rate(5) / 1000)
        time.sleep(0.3)
    print("cpu  control ops/s / 1000, round by round")
    for cpu in cpus:
        print(f"{cpu:3d} " + " ".join(f"{x:5.0f}" for x in rows[cpu]))


if __name__ == "__main__":
    main()
