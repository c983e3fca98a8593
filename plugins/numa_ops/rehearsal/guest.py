"""What runs inside the two-node guest: the kernel's own account of its nodes, a placement it lacks (refused,
nothing run), then the command line's real path up to the records, all written to ``guest.json``. The DuckDB
load, the reports and the gate read only those files, not the kernel: the host runs them (``finish``), natively,
where the guest took minutes to import DuckDB and Altair under emulation.

Only the standard library is imported at the top: the virtual environment is remounted with page caching
first (``mount_venv``), so that each worker's torch is read from the host once, not once per process.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from numa_ops.rehearsal.proofs import GuestJson, RefusalJson

GUEST_JSON = "guest.json"
MISSING_NODE = 2  # a node the guest does not have: the planner must refuse it
# A tiny model, few samples, every node, in one plan: the separate-process placement (``process``: the whole
# worker on node 0, then on node 1) and the paired arms in one worker each (``memory``: the worker on node 0, its
# host pool mbind'ed to node 0 then node 1, as ``pool`` placement puts it; ``thread``: the launching thread on a
# core of each node), zipped so each is planned once. Four worker processes: every worker start costs minutes of
# emulated imports, so the penalty's interval comes from the paired arms, not from repeated processes.
EXPERIMENT = "quick_test"
PLACEMENTS = [("process", "memory"), ("paired", "memory"), ("paired", "thread")]
PLACEMENT_KEY, PAIRED_KEY = "experiment.hardware.placement", "experiment.hardware.paired"
OVERRIDES = [
    "experiment.vit_configs=[{name:tiny,patch_size:16,depth:1,heads:2,dim:64,mlp_dim:128}]",
    "experiment.test.tensor_shape=[3,32,32]",
    "experiment.test.batch_size=8",
    "experiment.test.num_samples=32",
    "experiment.test.memory_size_mb=4",
    "experiment.test.warmup_batches=1",
    "experiment.test.min_trials=3",
    "experiment.test.max_trials=3",
    "experiment.test.min_trial_s=0.2",
    "experiment.test.max_trial_time_s=30",
    "experiment.test.paired_min_blocks=3",
    "experiment.test.paired_max_blocks=4",  # an interval and an MDE from 3 or 4 blocks: mechanics, not a figure
    "experiment.test.paired_max_s=120",
    "experiment.test.timeout_s=1800",  # software emulation on a shared host: minutes where a GPU host takes seconds
    "experiment.test.repeats=1",
    "experiment.hardware.numa_nodes=all",
    f"{PLACEMENT_KEY}={','.join(p for p, _ in PLACEMENTS)}",
    f"{PAIRED_KEY}={','.join(k for _, k in PLACEMENTS)}",
    "--zip", f"{PLACEMENT_KEY},{PAIRED_KEY}",
]
NODES_KEY = "experiment.hardware.numa_nodes="


def run_args() -> list[str]:
    """``python -m numa_ops run`` arguments of the rehearsal's plan."""
    return [f"experiment={EXPERIMENT}", *OVERRIDES]


def refused_args() -> list[str]:
    """The same plan on a node the guest does not have."""
    return [f"{NODES_KEY}[{MISSING_NODE}]" if a.startswith(NODES_KEY) else a for a in run_args()]


def mount_venv(venv: Path, tag: str) -> str | None:
    """Mount the host's virtual environment (exported as ``tag``) over its own path with page caching;
    None, or why not (then it is read uncached, slower)."""
    argv = ["mount", "-t", "9p", "-o", "ro,trans=virtio,version=9p2000.L,cache=loose,msize=524288", tag, str(venv)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return None if done.returncode == 0 else f"{' '.join(argv)}: {done.stderr.strip()}"


def numactl_hardware() -> str:
    """``numactl --hardware``: the guest kernel's nodes, CPUs and distances, as numactl reads them."""
    return subprocess.run(["numactl", "--hardware"], capture_output=True, text=True, check=True).stdout


def _folders(outputs: Path) -> set[str]:
    return (
        {p.name for p in outputs.iterdir() if p.is_dir() and (p / "plan.json").exists()} if outputs.is_dir() else set()
    )


def refusal(outputs: Path) -> RefusalJson:
    """Plan on a node the guest lacks: the command's exit status, its message, and the run folders it made."""
    from numa_ops import cli

    before, err = _folders(outputs), io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["run", *refused_args()])
    return {"args": refused_args(), "rc": rc, "stderr": err.getvalue().strip(),
            "new_folders": sorted(_folders(outputs) - before)}


def main(venv: Path, tag: str) -> int:
    """Every step in order; ``guest.json`` in the outputs folder says what each gave. 0 if the run command did."""
    started = time.monotonic()
    report: GuestJson = {"seconds": {}}

    def step(name: str, fn, *args):
        t0 = time.monotonic()
        try:
            return fn(*args)
        finally:
            report["seconds"][name] = round(time.monotonic() - t0, 1)

    report["venv_mount_problem"] = step("mount", mount_venv, venv, tag)
    report["numactl_hardware"] = step("numactl", numactl_hardware)
    print(report["numactl_hardware"], flush=True)
    from numa_ops import paths

    outputs = paths.outputs_dir()
    report["refusal"] = step("refusal", refusal, outputs)
    print(f"refused as it should be: {report['refusal']['stderr']}", flush=True)
    before = _folders(outputs)
    from numa_ops import cli

    report["run_args"] = run_args()
    report["run_rc"] = step("run", cli.run, run_args(), False)
    made = sorted(_folders(outputs) - before)
    report["folder"] = str(outputs / made[0]) if len(made) == 1 else None
    report["seconds"]["total"] = round(time.monotonic() - started, 1)
    (outputs / GUEST_JSON).write_text(json.dumps(report, indent=2))
    return 0 if report["run_rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2]))
