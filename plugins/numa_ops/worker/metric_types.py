"""The shapes of what the worker measures, as the JSON it builds: each part of a run's metrics (``measure``), the
copy pass (``engine``), a trial's disturbance and the launching core (``launch_thread``), telemetry (``telemetry``).

They are the record's ``metrics`` before :class:`numa_ops.record.RunMetrics` validates it, key for key; the
stage keys (``h2d_ms``, ``forward_ms``, ``d2h_ms``) follow ``engine.STAGES``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NotRequired, TypedDict

if TYPE_CHECKING:
    from numa_ops.specs import RunSpecJson

Percentiles = dict[str, float | None]  # stats.percentiles: median, p05, p95, ... -> ms
Interval = dict[str, float | int | str | None]  # stats.confidence_interval: median, low, high, level, n, ...


class TelemetryJson(TypedDict):
    """NVML's samples over a run, summed up: the mean and max of each field (all None without NVML)."""

    source: str | None
    samples: int
    gpu_util_pct_mean: float | None
    gpu_util_pct_max: float | None
    mem_used_mb_mean: float | None
    mem_used_mb_max: float | None
    pcie_tx_mbps_mean: float | None
    pcie_tx_mbps_max: float | None
    pcie_rx_mbps_mean: float | None
    pcie_rx_mbps_max: float | None
    sm_clock_mhz_mean: float | None
    sm_clock_mhz_max: float | None
    power_w_mean: float | None
    power_w_max: float | None
    temp_c_mean: float | None
    temp_c_max: float | None
    interval_s: NotRequired[float]
    mode: NotRequired[str]
    error: NotRequired[str]
    when: NotRequired[str]  # off | during | separate


class DisturbanceJson(TypedDict):
    """What disturbed the launching thread over one trial (None: not readable here)."""

    involuntary_switches: int
    migrations: int | None
    steal_ms: float | None


class LaunchCoreJson(TypedDict):
    """The launching thread's core: where it ran, how often it moved, what it chose from."""

    cpu: int | None
    held: list[int]
    hops: int
    candidates_ops_per_s: dict[str, int]  # CPU -> its control rate
    taken_by_other_workers: list[int]
    allowed_cpus: int
    note: str | None


class PoolPagesJson(TypedDict):
    """Where a buffer's pages are (``pages.placement_proof``): pages per node, and the share on the intended one."""

    source: str | None
    by_node: dict[str, int] | None
    intended_node: int
    fraction_on_intended: float | None
    policy: str | None


class CopyPassJson(TypedDict, total=False):
    """The copy micro-pass (``Engine.copy_bandwidth``): per direction its ms, GB/s, copies per event pair and bytes;
    on the CPU only the GB/s, as None."""

    gate_misses: int
    h2d_copy_ms: float
    h2d_gbps: float | None
    h2d_copies_per_event: int
    h2d_bytes: int
    d2h_copy_ms: float
    d2h_gbps: float | None
    d2h_copies_per_event: int
    d2h_bytes: int


class GateHoldJson(TypedDict):
    """How the gates held the GPU back while the CPU issued (``metrics.gate``)."""

    spins_ms: dict[str, float]  # stage -> the spin
    misses: int
    gated_batches: int
    copy_misses: int | None
    h2d: str


class CpuControlJson(TypedDict):
    unit: str
    trials: list[float]
    median: float | None
    low: float | None
    high: float | None


class BindingJson(TypedDict):
    """The stage that bounds the pipelined rate (``measure.binding``)."""

    binding_stage: str | None
    binding_margin: float | None
    binding_clear: bool | None
    regime: str | None


class TrialMetricsJson(BindingJson):
    """The headline, its interval, the pipelined and ideal rates, and how the trials went."""

    device: str
    execution: str
    d2h_mode: str
    copies: str
    timing: str
    samples_measured: int
    batches: int
    batches_per_trial: dict[str, int]  # serial | pipelined | stage -> batches a trial
    min_trial_s: float
    trials: int
    trials_s: float
    trial_s: list[float]
    timed_from: float | None
    timed_to: float | None
    ci_target: float
    ci_target_met: bool
    stop_reason: str | None
    samples_per_s: float | None
    samples_per_s_ci: Interval
    serial_samples_per_s: float | None
    pipelined_samples_per_s: float | None
    pipelined_samples_per_s_ci: Interval | None
    ideal_samples_per_s: float | None
    pipelined_vs_ideal: float | None
    pipelined_vs_serial: float | None
    trial_samples_per_s: dict[str, list[float]]  # serial | pipelined -> each trial's samples/s


class StageMetricsJson(TypedDict):
    """Each stage's GPU time and issue time, the forward's, and the gates."""

    h2d_ms: Percentiles
    forward_ms: Percentiles
    d2h_ms: Percentiles
    batch_ms: Percentiles
    issue_ms: dict[str, Percentiles]  # stage | batch -> the CPU's issue time
    fwd_eager_ms: float | None
    fwd_ms: float
    fwd_gpu_ms: float | None
    fwd_issue_ms: float | None
    yardstick_error: str | None
    launch_overhead_share: float | None
    gate: GateHoldJson | None


class CopyMetricsJson(TypedDict):
    """Bytes moved per batch and per sample, and the GB/s of the copy pass and of each copy stage."""

    copy_pass: CopyPassJson | None
    h2d_bytes_per_batch: int
    d2h_bytes_per_batch: int
    h2d_gbps: float | None
    d2h_gbps: float | None
    h2d_stage_gbps: float | None
    d2h_stage_gbps: float | None
    flops_per_sample: int
    h2d_bytes_per_sample: int
    d2h_bytes_per_sample: int


class EngineMetricsJson(TypedDict):
    """The host pool, the model, compilation and GPU memory."""

    pool_mb: float
    pool_batches: int
    pool_pinned: bool
    pool_fill_s: float | None
    pool_pages: PoolPagesJson | None
    placement_mode: str
    parameters: int
    first_call_s: float | None
    compile_s: float | None
    compile_break_even_samples: int | None
    peak_gpu_mem_mb: float | None


class CpuMetricsJson(TypedDict):
    """The launching thread: its CPU-speed control, what disturbed each trial, where it ran."""

    cpu_control: CpuControlJson
    cpu_control_rate: float | None
    trial_disturbance: list[DisturbanceJson]
    trial_flags: list[list[str]]
    intra_op_threads: int
    launch_cpu: int | None
    trial_launch_cpu: list[int | None]
    launch_cpu_node: int | None
    launch_core: LaunchCoreJson | None


class BreakEvenJson(TypedDict, total=False):
    """A compiled run against the eager forward of its model (``compile_break_even_samples`` as in
    :class:`EngineMetricsJson`)."""

    eager_reference_fwd_ms: float
    compile_speedup: float
    compile_overhead_s: float
    compile_pays_off: bool


class MetricsJson(TrialMetricsJson, StageMetricsJson, CopyMetricsJson, EngineMetricsJson, CpuMetricsJson):
    """A successful run's metrics, as ``compose_metrics`` puts them together (a compiled run's break-even keys and
    a paired run's ``paired`` added where they apply)."""

    telemetry: TelemetryJson
    eager_reference_fwd_ms: NotRequired[float]
    compile_speedup: NotRequired[float]
    compile_overhead_s: NotRequired[float]
    compile_pays_off: NotRequired[bool]


class ArmSummaryJson(TypedDict):
    """What the record says of a paired run's arm before its numbers (``arms.arm_summary``)."""

    name: str
    node: int
    pinned: bool
    placement: str | None
    numa_distance: int | None


class PairedArmJson(ArmSummaryJson):
    """An arm's part of ``metrics.paired``: where it was, its trials and controls, its headline and stages."""

    pool_node: int
    thread_node: int
    trial_samples_per_s: list[float]
    cpu_control: list[float]
    launch_cpus: list[int | None]
    samples_per_s: float | None
    samples_per_s_ci: Interval
    h2d_ms_median: float | None
    forward_ms_median: float | None
    d2h_ms_median: float | None
    h2d_gbps: float | None
    d2h_gbps: float | None
    pool_pages: PoolPagesJson | None
    pool_pinned: bool | None


class PairedComparisonJson(TypedDict, total=False):
    """An arm against the reference (``paired.comparisons``): its blocks, and ``stats.paired_interval``'s keys
    (n, estimate, sd, df, low_ln, high_ln, ratio, low, high, half_width, mde, verdict, method)."""

    arm: int
    vs: int
    blocks: int
    block_diffs: list[float]
    adjusted: Interval | None  # the interval adjusted by the CPU-speed control, with its slope
    n: int
    estimate: float | None
    sd: float | None
    df: int | None
    low_ln: float | None
    high_ln: float | None
    ratio: float | None
    low: float | None
    high: float | None
    half_width: float | None
    mde: float | None
    verdict: str
    method: str


class PairedJson(TypedDict):
    """``metrics.paired``: the arms, each compared with the reference, and how the blocks went."""

    kind: str | None
    reference: int
    arms: list[PairedArmJson]
    comparisons: list[PairedComparisonJson]
    design: str
    settle_batches: int
    stop_reason: str | None
    target: float
    blocks: int
    trials_s: float
    adjustment: str


class PairedMetricsJson(MetricsJson):
    """A paired run's metrics: the reference arm's, with ``paired``."""

    paired: PairedJson


class PartnerAnswer(TypedDict, total=False):
    """What a partner process answers (``worker.partner``): one of ready, ok, a trial, its metrics, or an error."""

    ready: bool
    pid: int
    ok: bool
    rate: float
    control: float
    cpu: int | None
    trial_s: float
    metrics: MetricsJson
    error: str
    traceback: str


class TrialRequest(TypedDict):
    pipelined: bool


class PartnerRequest(TypedDict, total=False):
    """What the worker asks a partner process (``worker.partner``): set up, the pass sizes, a trial, or finish."""

    spec: RunSpecJson
    node: int
    sizes: dict[str, int]  # measure.PassSizes as JSON
    trial: TrialRequest
    finish: bool
