"""Which resource limits a run: the launching CPU, the host-device copies, or the GPU's compute.

The regime is the one of the stage that bounds the pipelined rate (``worker.measure``'s binding stage): the
CPU's issue time per batch (launch-bound: the GPU waits on the CPU that launches its kernels), a copy
(transfer-bound), or the GPU's gated forward (compute-bound).
"""

from __future__ import annotations

LAUNCH_BOUND, TRANSFER_BOUND, COMPUTE_BOUND = "launch-bound", "transfer-bound", "compute-bound"
BINDING = {"cpu_issue": LAUNCH_BOUND, "h2d": TRANSFER_BOUND, "d2h": TRANSFER_BOUND, "forward": COMPUTE_BOUND}


def of_binding(stage: str) -> str:
    """The regime of a run whose pipelined rate is bound by ``stage`` (cpu_issue, h2d, d2h or forward)."""
    try:
        return BINDING[stage]
    except KeyError:
        raise ValueError(f"unknown binding stage {stage!r}; one of {sorted(BINDING)}") from None
