"""A paired run (``hardware.placement=paired``): two or more arms of one configuration in one worker, alternated
trial by trial in ABBA blocks, so drift common to the process and the host cancels out of the comparison.

A block is every arm forwards then backwards (``ABBA``); odd blocks start from the last arm (``BAAB``), so a
linear drift and the order inside a block hit every arm alike. After each switch one untimed batch settles the
new arm's buffers or core. A block's difference for arm ``j`` is the mean ln samples/s of its trials minus the
reference arm's (arm 0); the comparison is the t interval over blocks (``worker.stats.paired_interval``). Memory
arms also get the interval adjusted for the CPU-speed control (a pooled within-arm regression of ln rate on ln
control): the arm does not move the launching core there. Thread arms do, so theirs is never adjusted.
Process arms (``hardware.paired=process``) are whole worker processes: this one, bound to the first arm's node,
and a resident partner per other arm bound by numactl to its node (:mod:`numa_ops.worker.partner`); they take
turns trial by trial, and the comparison is the whole penalty (CPU and all memory moved), never adjusted.

Each trial is the serial pass (the compared headline, with its CPU-speed control) and the gated stage pass; the
pipelined pass, which is not compared, runs in every fourth block only. The record's usual metrics are the
reference arm's (its trials, stages and copies); ``metrics.paired`` holds
every arm's trials and controls and each comparison.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from numa_ops.specs import RunSpec
from numa_ops.topology import numactl_path
from numa_ops.worker.arms import ArmBuffers, PartnerProcess, arm_summary, memory_buffers, memory_pools
from numa_ops.worker.engine import Engine
from numa_ops.worker.launch_thread import LaunchCore
from numa_ops.worker.measure import (
    PassSizes,
    Trials,
    compose_metrics,
    current_cpu,
    garbage_collection_off,
    one_trial,
    separate_telemetry,
    size_passes,
)
from numa_ops.worker.metric_types import (
    MetricsJson,
    PairedArmJson,
    PairedComparisonJson,
    PairedJson,
    PairedMetricsJson,
)
from numa_ops.worker.stats import PairedStoppingRule, paired_interval
from numa_ops.worker.telemetry import Telemetry

SETTLE_BATCHES = 1  # untimed batches after each switch of arm
PIPELINED_EVERY = 4  # blocks: the pipelined pass (not compared) runs in every fourth block, to save GPU time
DESIGN = "ABBA"


def block_order(arms: int, block: int) -> list[int]:
    """The arms' order in block ``block``: forwards then backwards (ABBA), odd blocks from the last arm (BAAB)."""
    forward = list(range(arms))
    return forward + forward[::-1] if block % 2 == 0 else forward[::-1] + forward


def block_means(values: list[float], per_block: int) -> list[float]:
    """Mean of each consecutive ``per_block`` values (an arm's ln rates, block by block)."""
    return [float(np.mean(values[i:i + per_block])) for i in range(0, len(values) - per_block + 1, per_block)]


def control_slope(log_rates: list[list[float]], log_controls: list[list[float]]) -> float:
    """The pooled within-arm slope of ln trial rate on ln trial control (0 where the control does not vary)."""
    sxy = sxx = 0.0
    for y, c in zip(log_rates, log_controls, strict=True):
        yc, cc = np.asarray(y) - np.mean(y), np.asarray(c) - np.mean(c)
        sxy += float(yc @ cc)
        sxx += float(cc @ cc)
    return sxy / sxx if sxx > 0 else 0.0


def comparisons(
    log_rates: list[list[float]], log_controls: list[list[float]] | None, per_block: int
) -> list[PairedComparisonJson]:
    """Each arm against the reference: block differences, the paired interval, and (with controls) the adjusted one."""
    out = []
    means = [block_means(r, per_block) for r in log_rates]
    slope = adjusted_means = None
    if log_controls is not None:
        slope = control_slope(log_rates, log_controls)
        centre = float(np.mean([x for c in log_controls for x in c]))
        adjusted = [[y - slope * (c - centre) for y, c in zip(ys, cs, strict=True)]
                    for ys, cs in zip(log_rates, log_controls, strict=True)]
        adjusted_means = [block_means(a, per_block) for a in adjusted]
    for j in range(1, len(log_rates)):
        diffs = [b - a for a, b in zip(means[0], means[j], strict=False)]
        item: PairedComparisonJson = {"arm": j, "vs": 0, "blocks": len(diffs), "block_diffs": diffs,
                                **paired_interval(diffs), "adjusted": None}
        if adjusted_means is not None and len(diffs) >= 3:
            adj = [b - a for a, b in zip(adjusted_means[0], adjusted_means[j], strict=False)]
            item["adjusted"] = {**paired_interval(adj, df_lost=2), "slope": slope}
        out.append(item)
    return out


@dataclass
class _ArmRun:
    """One arm in the worker: what it switches in, and the trials it gathered."""

    index: int
    buffers: ArmBuffers | None  # memory arms
    core: LaunchCore | None  # the launching core(s) its trials run on
    partner: PartnerProcess | None = None  # process arms other than the first: the partner process taking them
    trials: Trials = field(default_factory=lambda: Trials(launch_cpu=current_cpu()))


def _switch(engine: Engine, arm: _ArmRun) -> None:
    """Put ``arm`` in place, then settle it with untimed batches (a partner settles its own)."""
    if arm.partner is not None:
        return
    if arm.buffers is not None:
        engine.use_buffers(arm.buffers.pool, arm.buffers.host_out, arm.buffers.pages)
    elif arm.core is not None:  # a thread arm: the launching thread moves to its node before settling
        arm.trials.launch_cpu = arm.core.hop()
    engine.serial_pass(SETTLE_BATCHES)


def _trial(engine: Engine, sizes: PassSizes, arm: _ArmRun, pipelined: bool) -> None:
    """One trial of ``arm``: in this process, or asked of its partner process."""
    if arm.partner is None:
        one_trial(engine, sizes, arm.trials, arm.core, pipelined=pipelined)
        return
    answer = arm.partner.trial(pipelined)
    arm.trials.serial_rates.append(float(answer["rate"]))
    arm.trials.controls.append(float(answer["control"]))
    arm.trials.trial_cpus.append(answer.get("cpu"))
    arm.trials.trial_s.append(float(answer["trial_s"]))


def _paired_trials(
    engine: Engine, sizes: PassSizes, arms: list[_ArmRun], rule: PairedStoppingRule, telemetry: Telemetry
) -> tuple[str, float, int]:
    """ABBA blocks until the rule stops them: (stop reason, seconds, blocks)."""
    per_block = 2  # each arm's trials in one block
    t0, block, reason = time.perf_counter(), 0, None
    with garbage_collection_off(), telemetry:
        for arm in arms:
            arm.trials.timed_from = time.time()
        while reason is None:
            for i in block_order(len(arms), block):
                _switch(engine, arms[i])
                _trial(engine, sizes, arms[i], pipelined=block % PIPELINED_EVERY == 0)
            block += 1
            logs = [[math.log(r) for r in a.trials.serial_rates] for a in arms]
            diffs = [[b - a for a, b in zip(block_means(logs[0], per_block), block_means(logs[j], per_block),
                                                strict=True)] for j in range(1, len(arms))]
            done, why = rule.decide(diffs, time.perf_counter() - t0)
            reason = why if done else None
    seconds = time.perf_counter() - t0
    for arm in arms:
        arm.trials.timed_to, arm.trials.stop_reason = time.time(), reason
        arm.trials.seconds = seconds
    return reason, seconds, block


def _arm_record(spec: RunSpec, arm: _ArmRun, metrics: MetricsJson) -> PairedArmJson:
    """An arm's part of ``metrics.paired``: where it was, its trials and controls, its headline and stages."""
    stage = {f"{k}_ms_median": (metrics.get(f"{k}_ms") or {}).get("median") for k in ("h2d", "forward", "d2h")}
    return {
        **arm_summary(spec.arms[arm.index]),
        "pool_node": spec.arms[arm.index].node if spec.paired in ("memory", "process") else spec.mem_node,
        "thread_node": spec.arms[arm.index].node if spec.paired in ("thread", "process") else spec.cpu_node,
        "trial_samples_per_s": list(arm.trials.serial_rates),
        "cpu_control": list(arm.trials.controls),
        "launch_cpus": list(arm.trials.trial_cpus),
        "samples_per_s": metrics["samples_per_s"],
        "samples_per_s_ci": metrics["samples_per_s_ci"],
        **stage,
        "h2d_gbps": metrics.get("h2d_gbps"),
        "d2h_gbps": metrics.get("d2h_gbps"),
        "pool_pages": metrics.get("pool_pages"),
        "pool_pinned": metrics.get("pool_pinned"),
    }


def measure_paired(
    spec: RunSpec,
    device: torch.device,
    nvml_index: int | None,
    before_timing: Callable[[], None] | None,
    core: LaunchCore | None,
    arm_cores: dict[int, LaunchCore] | None,
) -> PairedMetricsJson:
    """Measure every arm of ``spec`` in ABBA blocks; the reference arm's metrics with ``paired`` added."""
    if len(spec.arms) < 2 or spec.paired not in ("memory", "thread", "process"):
        raise ValueError(f"a paired run needs two or more arms and a kind (memory|thread|process), got {spec.arms!r}")
    memory = spec.paired == "memory"
    if spec.paired == "process":
        return _measure_with_partners(spec, device, nvml_index, before_timing, core)
    if not memory and not arm_cores:
        raise RuntimeError("thread arms need launching cores on each arm's node, and none could be held")
    cuda = device.type == "cuda"
    pools = memory_pools(spec, cuda) if memory else []
    engine = Engine(spec.model, spec.test, device, "paired", spec.arms[0].node, pool=pools[0] if pools else None)
    buffers: list[ArmBuffers] = []
    try:
        buffers = memory_buffers(spec, engine, pools) if memory else []
        arms = [_ArmRun(i, buffers[i] if memory else None,
                        core if memory else (arm_cores or {})[arm.node]) for i, arm in enumerate(spec.arms)]
        return _measure_arms(spec, engine, arms, nvml_index, before_timing)
    finally:
        for b in buffers:
            b.close()
        for pool in pools:
            pool.close()
        engine.close()


def _measure_with_partners(
    spec: RunSpec, device: torch.device, nvml_index: int | None, before_timing: Callable[[], None] | None,
    core: LaunchCore | None,
) -> PairedMetricsJson:
    """Whole-process arms: this worker (bound to the first arm's node) and a partner process per other arm."""
    engine = Engine(spec.model, spec.test, device, "process", spec.arms[0].node)
    partners: list[PartnerProcess] = []
    try:
        partners = [PartnerProcess(spec, arm.node, numactl_path()) for arm in spec.arms[1:]]
        arms = [_ArmRun(0, None, core), *(_ArmRun(i + 1, None, None, p) for i, p in enumerate(partners))]
        return _measure_arms(spec, engine, arms, nvml_index, before_timing)
    finally:
        for partner in partners:
            partner.close()
        engine.close()


def _measure_arms(
    spec: RunSpec, engine: Engine, arms: list[_ArmRun], nvml_index: int | None, before_timing: Callable[[], None] | None
) -> PairedMetricsJson:
    """Warm every arm, size the passes on the reference, run the blocks, time each arm's copies, compose."""
    test = spec.test
    for arm in reversed(arms):  # the reference last: the passes are sized on it (a partner warmed itself up)
        if arm.partner is None:
            _switch(engine, arm)
            engine.warmup(test.warmup_batches)
    sizes = size_passes(engine, test)
    for arm in arms:
        if arm.partner is not None:
            arm.partner.sizes(dataclasses.asdict(sizes))
    if before_timing is not None:
        before_timing()
    mode = test.telemetry if engine.cuda else "off"
    reference_core = arms[0].core
    during = Telemetry(nvml_index if mode == "during" else None,
                       cpus=reference_core.others() if reference_core else None)
    rule = PairedStoppingRule(target=test.paired_target, min_blocks=test.paired_min_blocks,
                              max_blocks=test.paired_max_blocks, max_time_s=test.paired_max_s)
    reason, seconds, blocks = _paired_trials(engine, sizes, arms, rule, during)
    per_arm: list[MetricsJson] = []
    for arm in reversed(arms):  # each arm's copy pass with its own buffers; the reference's metrics last
        if arm.partner is not None:
            per_arm.append(arm.partner.finish())
            continue
        _switch(engine, arm)
        copies = engine.copy_bandwidth()
        telemetry = (separate_telemetry(engine, sizes, nvml_index, arm.core) if mode == "separate" and arm.index == 0
                     else during)
        per_arm.append(compose_metrics(spec, engine, sizes, arm.trials, copies, telemetry, mode, arm.core,
                                       break_even=arm.index == 0))
    per_arm.reverse()
    log_rates = [[math.log(r) for r in a.trials.serial_rates] for a in arms]
    log_controls = [[math.log(c) for c in a.trials.controls] for a in arms] if spec.paired == "memory" else None
    paired: PairedJson = {
        "kind": spec.paired,
        "reference": 0,
        "arms": [_arm_record(spec, arm, m) for arm, m in zip(arms, per_arm, strict=True)],
        "comparisons": comparisons(log_rates, log_controls, per_block=2),
        "design": DESIGN,
        "settle_batches": SETTLE_BATCHES,
        "stop_reason": reason,
        "target": test.paired_target,
        "blocks": blocks,
        "trials_s": seconds,
        "adjustment": ("CPU-speed control, pooled within-arm regression of ln rate on ln control"
                       if spec.paired == "memory" else f"none: a {spec.paired} arm moves the control itself"),
    }
    return PairedMetricsJson(**per_arm[0], paired=paired)
