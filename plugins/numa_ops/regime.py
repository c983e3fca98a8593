"""Which resource limits a run: the launching CPU, the host-device copies, or the GPU's compute.

From a run's serial stage medians (ms per batch):

- ``fwd_ms``: the forward as measured in the run's execution mode;
- ``fwd_gpu_ms``: the same forward replayed as a CUDA graph (the GPU's own time, no launch cost);
- ``h2d_ms`` + ``d2h_ms``: the copies.

Rule, in this order:

1. **launch-bound** when launch overhead (``fwd_ms - fwd_gpu_ms``) is at least half of ``fwd_ms``
   *and* at least the copy time: the GPU waits on the CPU that launches its kernels;
2. **transfer-bound** when the copies take at least as long as the GPU's compute (``fwd_gpu_ms``);
3. **compute-bound** otherwise.

A run's record uses :func:`of_binding`: the regime is the one of the stage that bounds the pipelined
rate (``measure._binding``): the CPU's issue time per batch (launch-bound), a copy (transfer-bound),
or the GPU's gated forward (compute-bound). :func:`classify` is the older rule from stage medians.

Borders belong to the first class that reaches them (a share of exactly 0.5 is launch-bound,
copies equal to compute are transfer-bound).
"""

from __future__ import annotations

LAUNCH_SHARE = 0.5
LAUNCH_BOUND, TRANSFER_BOUND, COMPUTE_BOUND = "launch-bound", "transfer-bound", "compute-bound"


def launch_share(fwd_ms: float, fwd_gpu_ms: float) -> float:
    """Share of the forward that is launch overhead (0 when the graph is not faster)."""
    if fwd_ms <= 0:
        raise ValueError(f"fwd_ms must be positive, got {fwd_ms}")
    return max(0.0, (fwd_ms - fwd_gpu_ms) / fwd_ms)


def classify(h2d_ms: float, fwd_ms: float, fwd_gpu_ms: float, d2h_ms: float) -> str:
    """The run's regime by the rule in this module's docstring."""
    for name, value in (("h2d_ms", h2d_ms), ("fwd_ms", fwd_ms), ("fwd_gpu_ms", fwd_gpu_ms), ("d2h_ms", d2h_ms)):
        if value is None or value < 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    copies = h2d_ms + d2h_ms
    overhead = max(0.0, fwd_ms - fwd_gpu_ms)
    if launch_share(fwd_ms, fwd_gpu_ms) >= LAUNCH_SHARE and overhead >= copies:
        return LAUNCH_BOUND
    if copies >= fwd_gpu_ms:
        return TRANSFER_BOUND
    return COMPUTE_BOUND


BINDING = {"cpu_issue": LAUNCH_BOUND, "h2d": TRANSFER_BOUND, "d2h": TRANSFER_BOUND, "forward": COMPUTE_BOUND}


def of_binding(stage: str) -> str:
    """The regime of a run whose pipelined rate is bound by ``stage`` (cpu_issue, h2d, d2h or forward)."""
    try:
        return BINDING[stage]
    except KeyError:
        raise ValueError(f"unknown binding stage {stage!r}; one of {sorted(BINDING)}") from None
