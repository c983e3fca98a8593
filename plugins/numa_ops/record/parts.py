"""The parts of a run record (``record.RunRecord``): intervals, stage timings, copies, the CPU control, pool pages,
paired arms, and the base every part shares: typed fields, unknown keys kept, only the keys given written back."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from numa_ops.config import TestConfig, VitConfig


def given_keys(model: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (``model`` dumped) with only the keys ``model`` was given, and those it does not declare."""
    fields = type(model).model_fields
    given = {fields[n].alias or n for n in model.model_fields_set if n in fields}
    declared = {f.alias or n for n, f in fields.items()}
    return {k: v for k, v in data.items() if k in given or k not in declared}


class Part(BaseModel):
    """A part of a run record: typed fields, unknown keys kept, only the keys it was given written back.

    ``SOMETIMES``: the fields only some records hold (every other field is in every record of its kind).
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True, populate_by_name=True)
    SOMETIMES: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _given_keys(self, handler: SerializerFunctionWrapHandler) -> Any:
        return given_keys(self, handler(self))

    @classmethod
    def keys(cls, every: bool = True) -> tuple[str, ...]:
        """The JSON keys of this part, sorted: those every record holds (``every``), or all it may hold."""
        return tuple(sorted(f.alias or n for n, f in cls.model_fields.items() if not (every and n in cls.SOMETIMES)))


class RecordedModel(VitConfig):
    """The model as the record names it (unknown keys of other versions kept, only the keys given written)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @model_serializer(mode="wrap")
    def _given_keys(self, handler: SerializerFunctionWrapHandler) -> Any:
        return given_keys(self, handler(self))


class RecordedTest(TestConfig):
    """The test settings as the record holds them (unknown keys of other versions kept, only the keys given
    written: a setting added since is not filled into an older record)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @model_serializer(mode="wrap")
    def _given_keys(self, handler: SerializerFunctionWrapHandler) -> Any:
        return given_keys(self, handler(self))


class Percentiles(Part):
    """A series' median, tail percentiles, mean and range, in ms (all None when the stage did not run)."""

    median: float | None = None
    p95: float | None = None
    p99: float | None = None
    mean: float | None = None
    min: float | None = None
    max: float | None = None


class Interval(Part):
    """The median of the trials and its order-statistic interval (``worker.stats.confidence_interval``)."""

    n: int | None = None
    median: float | None = None
    mean: float | None = None
    low: float | None = None
    high: float | None = None
    rel_half_width: float | None = None
    level: float | None = None
    method: str | None = None


class IssueTimes(Part):
    """The launching thread's time to issue each stage, and a whole batch."""

    h2d: Percentiles | None = None
    forward: Percentiles | None = None
    d2h: Percentiles | None = None
    batch: Percentiles | None = None


class BatchesPerTrial(Part):
    serial: int | None = None
    pipelined: int | None = None
    stage: int | None = None


class GateHold(Part):
    """How the gates that keep the stream busy while the CPU enqueues held (GPU runs)."""

    spins_ms: dict[str, float] | None = None  # by stage
    misses: dict[str, int] | None = None  # by stage
    gated_batches: int | None = None
    copy_misses: int | None = None
    h2d: str | None = None


class CopyPass(Part):
    """The copy micro-pass: back-to-back copies between the pool and the GPU (GPU runs)."""

    gate_misses: int | None = None
    h2d_copy_ms: float | None = None
    d2h_copy_ms: float | None = None


class CpuControl(Part):
    """The CPU-speed control on the launching core, trial by trial."""

    unit: str | None = None
    trials: list[float] = Field(default_factory=list)
    median: float | None = None
    low: float | None = None
    high: float | None = None


class Disturbance(Part):
    """What disturbed the launching thread during one trial."""

    involuntary_switches: int | None = None
    migrations: int | None = None
    steal_ms: float | None = None


class LaunchCoreNote(Part):
    """The launching thread's core: which, chosen from which, and how often it hopped."""

    cpu: int | None = None
    held: list[int] = Field(default_factory=list)
    hops: int | None = None
    candidates_ops_per_s: dict[str, float] = Field(default_factory=dict)
    taken_by_other_workers: list[int] = Field(default_factory=list)
    allowed_cpus: int | None = None
    note: str | None = None


class PoolPages(Part):
    """Where the host pool's pages are (``/proc/self/numa_maps``), the proof of its placement."""

    source: str | None = None
    by_node: dict[str, int] | None = None
    intended_node: int | None = None
    fraction_on_intended: float | None = None
    policy: str | None = None


class TelemetrySummary(Part):
    """NVML's mean and max of each field (every ``<field>_mean`` / ``<field>_max`` kept), and when it sampled."""

    when: str | None = None
    source: str | None = None
    samples: int | None = None
    gpu_util_pct_mean: float | None = None
    pcie_rx_mbps_max: float | None = None
    power_w_mean: float | None = None


class TrialRates(Part):
    """Samples/s of each trial, by kind of pass."""

    serial: list[float] = Field(default_factory=list)
    pipelined: list[float] = Field(default_factory=list)


class ArmPlace(Part):
    """One arm of a paired run: its node, whether its pool is pinned, its placement against the GPU."""

    node: int | None = None
    pinned: bool | None = None
    placement: str | None = None
    numa_distance: int | None = None


class PairedInterval(Part):
    """A paired comparison's interval over blocks (``worker.stats.paired_interval``)."""

    n: int | None = None
    estimate: float | None = None
    sd: float | None = None
    df: int | None = None
    ratio: float | None = None
    low: float | None = None
    high: float | None = None
    low_ln: float | None = None
    high_ln: float | None = None
    half_width: float | None = None
    mde: float | None = None
    verdict: str | None = None
    method: str | None = None


class AdjustedInterval(PairedInterval):
    """The interval adjusted for the CPU-speed control, and the slope it used."""

    slope: float | None = None


class Comparison(PairedInterval):
    """One arm against the reference arm."""

    arm: int | None = None
    vs: int | None = None
    blocks: int | None = None
    block_diffs: list[float] = Field(default_factory=list)
    adjusted: AdjustedInterval | None = None


class PairedArm(ArmPlace):
    """An arm's part of ``metrics.paired``: where it was, its trials and controls, its headline and stages."""

    name: str | None = None
    pool_node: int | None = None
    thread_node: int | None = None
    trial_samples_per_s: list[float] = Field(default_factory=list)
    cpu_control: list[float] = Field(default_factory=list)
    launch_cpus: list[int | None] = Field(default_factory=list)
    samples_per_s: float | None = None
    samples_per_s_ci: Interval | None = None
    h2d_ms_median: float | None = None
    forward_ms_median: float | None = None
    d2h_ms_median: float | None = None
    h2d_gbps: float | None = None
    d2h_gbps: float | None = None
    pool_pages: PoolPages | None = None
    pool_pinned: bool | None = None


class PairedMetrics(Part):
    """A paired run's arms and comparisons (``worker.paired``)."""

    kind: str | None = None
    reference: int | None = None
    arms: list[PairedArm] = Field(default_factory=list)
    comparisons: list[Comparison] = Field(default_factory=list)
    design: str | None = None
    settle_batches: int | None = None
    stop_reason: str | None = None
    target: float | None = None
    blocks: int | None = None
    trials_s: float | None = None
    adjustment: str | None = None
