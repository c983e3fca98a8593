"""The run record, typed: what the worker writes to ``runs/<run_id>.json`` and what gate, nightly, summaries and the
DuckDB load read back.

Every part keeps the keys it was given and only those: a record written by the worker dumps to exactly the JSON
keys it was built with, and an older record (a key missing, a key since added) validates and dumps back as it
was. Unknown keys are kept, so a record written by a newer numa-lab still loads. ``RunRecord.to_json()`` is the
file's content; ``RunRecord.model_validate(data)`` reads one. The parts are in :mod:`numa_ops.record.parts`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from numa_ops.record.parts import (
    AdjustedInterval,
    ArmPlace,
    BatchesPerTrial,
    Comparison,
    CopyPass,
    CpuControl,
    Disturbance,
    GateHold,
    Interval,
    IssueTimes,
    LaunchCoreNote,
    PairedArm,
    PairedInterval,
    PairedMetrics,
    Part,
    Percentiles,
    PoolPages,
    RecordedModel,
    RecordedTest,
    TelemetrySummary,
    TrialRates,
)

__all__ = [
    "RECORD_SCHEMA", "AdjustedInterval", "ArmPlace", "BatchesPerTrial", "Binding", "Comparison", "CopyPass",
    "CpuControl", "Disturbance", "Environment", "GateHold", "Interval", "IssueTimes", "LaunchCoreNote", "PairedArm",
    "PairedInterval", "PairedMetrics", "Part", "Percentiles", "PoolPages", "RecordedModel", "RecordedTest",
    "Reproduce", "RunMetrics", "RunPlacement", "RunRecord", "TelemetrySummary", "TrialRates", "Versions",
]

RECORD_SCHEMA = 1


class RunMetrics(Part):
    """What one successful run measured (``worker.measure``): the headline with its interval, the trials, each
    stage's GPU and issue times, the copies, the host pool, the model, the launching thread and telemetry."""

    SOMETIMES: ClassVar[frozenset[str]] = frozenset({
        "eager_reference_fwd_ms", "compile_speedup", "compile_overhead_s", "compile_pays_off", "pattern_lock_wait_s",
        "paired",
    })
    # the headline and how the trials went
    device: str | None = None
    execution: str | None = None
    d2h_mode: str | None = None
    copies: str | None = None
    timing: str | None = None
    samples_measured: int | None = None
    batches: int | None = None
    batches_per_trial: BatchesPerTrial | None = None
    min_trial_s: float | None = None
    trials: int | None = None
    trials_s: float | None = None
    trial_s: list[float] = Field(default_factory=list)
    timed_from: float | None = None
    timed_to: float | None = None
    ci_target: float | None = None
    ci_target_met: bool | None = None
    stop_reason: str | None = None
    samples_per_s: float | None = None
    samples_per_s_ci: Interval | None = None
    serial_samples_per_s: float | None = None
    pipelined_samples_per_s: float | None = None
    pipelined_samples_per_s_ci: Interval | None = None
    ideal_samples_per_s: float | None = None
    binding_stage: str | None = None
    binding_margin: float | None = None
    binding_clear: bool | None = None
    regime: str | None = None
    pipelined_vs_ideal: float | None = None
    pipelined_vs_serial: float | None = None
    trial_samples_per_s: TrialRates | None = None
    # stages: GPU time of each, CPU issue time, the forward
    h2d_ms: Percentiles | None = None
    forward_ms: Percentiles | None = None
    d2h_ms: Percentiles | None = None
    batch_ms: Percentiles | None = None
    issue_ms: IssueTimes | None = None
    fwd_eager_ms: float | None = None
    fwd_ms: float | None = None
    fwd_gpu_ms: float | None = None
    fwd_issue_ms: float | None = None
    yardstick_error: str | None = None
    launch_overhead_share: float | None = None
    gate: GateHold | None = None
    # copies and bytes
    copy_pass: CopyPass | None = None
    h2d_bytes_per_batch: int | None = None
    d2h_bytes_per_batch: int | None = None
    h2d_gbps: float | None = None
    d2h_gbps: float | None = None
    h2d_stage_gbps: float | None = None
    d2h_stage_gbps: float | None = None
    flops_per_sample: int | None = None
    h2d_bytes_per_sample: int | None = None
    d2h_bytes_per_sample: int | None = None
    # the host pool, the model, compilation, GPU memory
    pool_mb: float | None = None
    pool_batches: int | None = None
    pool_pinned: bool | None = None
    pool_fill_s: float | None = None
    pool_pages: PoolPages | None = None
    placement_mode: str | None = None
    parameters: int | None = None
    first_call_s: float | None = None
    compile_s: float | None = None
    compile_break_even_samples: int | None = None
    eager_reference_fwd_ms: float | None = None
    compile_speedup: float | None = None
    compile_overhead_s: float | None = None
    compile_pays_off: bool | None = None
    peak_gpu_mem_mb: float | None = None
    # the launching thread
    cpu_control: CpuControl | None = None
    cpu_control_rate: float | None = None
    trial_disturbance: list[Disturbance] = Field(default_factory=list)
    trial_flags: list[list[str]] = Field(default_factory=list)
    intra_op_threads: int | None = None
    launch_cpu: int | None = None
    trial_launch_cpu: list[int | None] = Field(default_factory=list)
    launch_cpu_node: int | None = None
    launch_core: LaunchCoreNote | None = None
    telemetry: TelemetrySummary | None = None
    pattern_lock_wait_s: float | None = None  # a multi-GPU pattern's run: its wait for the GPUs' lock
    paired: PairedMetrics | None = None  # placement_mode paired: every arm and each comparison


class Binding(Part):
    """What the worker was bound to."""

    numactl: str | None = None
    cpus_allowed: str | None = None
    mems_allowed: str | None = None


class Environment(Part):
    """The worker's host, GPU, driver and software (``worker.environment``)."""

    host: str | None = None
    gpu_name: str | None = None
    driver: str | None = None
    torch: str | None = None
    cuda_runtime: str | None = None
    python: str | None = None
    cpu_model: str | None = None
    torch_threads: int | None = None
    binding: Binding | None = None
    vit_pytorch: str | None = None
    numactl_version: str | None = None  # numactl --version (None: not installed)


class Versions(Part):
    """The versions a run was measured with."""

    numa_lab: str | None = None
    torch: str | None = None
    cuda: str | None = None
    driver: str | None = None
    vit_pytorch: str | None = None
    numactl: str | None = None


class RunPlacement(Part):
    """Where a run was measured, as its spec had it (``reproduce.placement``)."""

    gpu_id: int | None = None
    cpu_node: int | None = None
    mem_node: int | None = None
    placement: str | None = None
    numa_distance: int | None = None
    lane: str | None = None
    placement_mode: str | None = None
    pool_node: int | None = None
    paired: str | None = None
    arms: list[ArmPlace] = Field(default_factory=list)
    study: str | None = None
    sweep_point: int | None = None
    repeat: int | None = None
    group_id: str | None = None


class Reproduce(Part):
    """What it takes to measure a run again (``numa_ops.reproduce``): its experiment, its placement, the versions
    and the hardware. ``experiment`` is a whole experiment config as JSON, validated when a rerun plans from it
    (``numa_ops.rerun``): a record stays readable where the config's schema has changed since."""

    experiment: dict[str, Any] | None = None
    placement: RunPlacement | None = None
    versions: Versions | None = None
    gpu_model: str | None = None
    cpu_model: str | None = None
    code_version: str | None = None


class RunRecord(Part):
    """One run's record: its spec (where, what, how), whether it succeeded, its metrics, and where it ran."""

    SOMETIMES: ClassVar[frozenset[str]] = frozenset({
        "paired", "arms", "group", "fake_gpu", "failed_batch_size", "traceback",
    })
    schema_: int = Field(RECORD_SCHEMA, alias="schema")
    run_id: str
    folder: str | None = None
    experiment: str | None = None
    study: str | None = None
    sweep_point: int | None = None
    lane: str | None = None
    gpu_id: int | None = None
    numa_node: int | None = None
    cpu_node: int | None = None
    mem_node: int | None = None
    placement: str | None = None
    numa_distance: int | None = None
    model: RecordedModel | None = None
    test: RecordedTest | None = None
    pooled: bool | None = None  # hardware.spread: measured by whichever lane took it
    group_id: str | None = None  # hardware.together: the multi-GPU pattern's run
    repeat: int | None = None  # which of test.repeats worker processes measured it (0-based)
    placement_mode: str | None = None  # process: numactl binds all; pool: the pool alone; paired
    pool_node: int | None = None  # the node the host pool was put on
    node_shared_with: list[str] = Field(default_factory=list)  # other devices' lanes on its CPU node
    paired: str | None = None  # placement_mode paired: the kind of arms (memory | thread | process)
    arms: list[ArmPlace] | None = None  # and where each is
    success: bool
    error: str | None = None
    device: str | None = None
    duration: float | None = None
    started_at: str | None = None
    finished_at: str | None = None
    metrics: RunMetrics | None = None
    environment: Environment | None = None
    worker_startup_s: float | None = None
    profile: dict[str, Any] | None = None  # the supervisor's note on the nsys session
    group: dict[str, Any] | None = None  # a multi-GPU pattern's members, barrier and release
    fake_gpu: bool | None = None  # a simulated GPU measured on the CPU (tests of multi-GPU scheduling)
    failed_batch_size: int | None = None  # out of memory: the batch size that did not fit
    traceback: str | None = None
    reproduce: Reproduce | None = None  # what a rerun needs (records written before it: None)
    rerun_of: str | None = None  # a rerun: the run it measured again

    def to_json(self) -> dict[str, Any]:
        """The record as its JSON file holds it."""
        return self.model_dump(mode="json", by_alias=True)

    @property
    def samples_per_s(self) -> float | None:
        """The headline: serial samples/s (None for a failed run)."""
        return self.metrics.samples_per_s if self.metrics is not None else None
