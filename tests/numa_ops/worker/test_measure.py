"""The measuring core on the CPU with the tiny model: pass sizes, trials, the binding stage, flags, the metrics."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from numa_ops import regime
from numa_ops.record import RunMetrics
from numa_ops.worker import flops
from numa_ops.worker.engine import STAGES, Engine
from numa_ops.worker.measure import (
    MAX_STAGE_BATCHES,
    PassSizes,
    Trials,
    binding,
    garbage_collection_off,
    measure_run,
    one_trial,
    passes_for,
    size_passes,
    trial_flags,
)

from tests.numa_ops.lanes import TINY_MODEL, TINY_TEST, run_spec

CPU = torch.device("cpu")
QUICK = {"min_trial_s": 0.01, "min_trials": 3, "max_trials": 4, "warmup_batches": 1, "max_trial_time_s": 30.0}


@pytest.mark.parametrize(
    ("seconds", "min_trial_s", "passes"),
    [(0.1, 0.5, 5), (0.3, 0.5, 2), (1.0, 0.5, 1), (0.0, 0.5, 1), (0.2, 0.0, 1)],
    ids=["five", "rounds-up", "one-pass-is-enough", "unmeasurable-pass", "no-minimum"],
)
def test_passes_for(seconds, min_trial_s, passes):
    assert passes_for(seconds, min_trial_s) == passes


def test_pass_sizes_are_whole_passes_of_num_samples():
    test = TINY_TEST.model_copy(update={"num_samples": 18, "min_trial_s": 0.0})  # 18 samples: 5 batches of 4
    engine = Engine(TINY_MODEL, test, CPU)
    try:
        engine.warmup(1)
        sizes = size_passes(engine, test)
    finally:
        engine.close()
    assert sizes == PassSizes(num_batches=5, serial=5, pipelined=0, stage=5)  # no pipelined pass on the CPU


def test_the_stage_pass_is_capped_and_a_short_pass_is_repeated_to_fill_a_trial():
    test = TINY_TEST.model_copy(update={"num_samples": 400, "min_trial_s": 3600.0})  # 100 batches; an hour a trial
    engine = Engine(TINY_MODEL, test, CPU)
    try:
        engine.warmup(1)
        sizes = size_passes(engine, test)
    finally:
        engine.close()
    assert sizes.num_batches == 100 and sizes.stage == MAX_STAGE_BATCHES
    assert sizes.serial % 100 == 0 and sizes.serial > 100  # whole passes, more than one


@pytest.mark.parametrize(
    ("gpu", "issue", "stage", "clear"),
    [
        ({"h2d": [1.0] * 5, "forward": [4.0] * 5, "d2h": [0.5] * 5}, [2.0] * 5, "forward", True),
        ({"h2d": [3.0] * 5, "forward": [1.0] * 5, "d2h": [0.5] * 5}, [2.0] * 5, "h2d", True),
        ({"h2d": [0.1] * 5, "forward": [1.0] * 5, "d2h": [0.1] * 5}, [3.0] * 5, "cpu_issue", True),
        ({"h2d": [1.0] * 5, "forward": [1.0, 1.5, 2.0, 2.5, 3.0], "d2h": [0.1] * 5}, [1.9] * 5, "forward", False),
    ],
    ids=["compute", "transfer", "launch", "too-noisy-to-be-clear"],
)
def test_the_binding_stage_is_the_slowest_and_its_regime_follows(gpu, issue, stage, clear):
    out = binding(gpu, issue, cuda=True)
    assert out["binding_stage"] == stage and out["binding_clear"] is clear
    assert out["regime"] == regime.of_binding(stage)
    medians = sorted([float(np.median(v)) for v in gpu.values()] + [float(np.median(issue))], reverse=True)
    assert out["binding_margin"] == pytest.approx(medians[0] / medians[1] - 1)


def test_no_binding_stage_on_the_cpu():
    assert set(binding({k: [] for k in STAGES}, [], cuda=False).values()) == {None}


def test_trial_flags_name_what_made_a_trial_suspect():
    quiet = {"migrations": 0, "steal_ms": 0.0, "involuntary_switches": 0}
    flags = trial_flags(
        [100.0, 100.0, 120.0, 100.0, 100.0],
        [quiet, {**quiet, "migrations": 2}, quiet, {**quiet, "steal_ms": 50.0}, {**quiet, "involuntary_switches": 50}],
        [1.0] * 5,
    )
    assert flags[0] == []
    assert flags[1] == ["2 CPU migration(s)"]
    assert flags[2] == ["cpu control +20% of the run's median"]
    assert flags[3] == ["steal 50 ms"]
    assert flags[4] == ["50 involuntary context switches"]


def test_garbage_collection_is_off_while_timing_and_back_on_after_an_error():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), garbage_collection_off():
        assert not gc.isenabled()
        raise RuntimeError("a failing pass")
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_one_trial_on_the_cpu_adds_one_of_everything_and_no_pipelined_rate():
    engine = Engine(TINY_MODEL, TINY_TEST, CPU)
    try:
        engine.warmup(1)
        trials = Trials(launch_cpu=None)
        sizes = PassSizes(num_batches=4, serial=8, pipelined=0, stage=4)
        for _ in range(2):
            one_trial(engine, sizes, trials, core=None)
    finally:
        engine.close()
    assert len(trials.serial_rates) == len(trials.controls) == len(trials.disturbances) == len(trials.trial_s) == 2
    assert trials.pipe_rates == [] and all(r > 0 for r in trials.serial_rates)
    assert {k: len(v) for k, v in trials.issue.items()} == {k: 16 for k in STAGES}  # every serial batch's issue
    assert trials.gpu == {k: [] for k in STAGES}  # no gated stage pass on the CPU


@pytest.mark.parametrize("d2h_mode", ["outputs", "tokens"], ids=["d2h-outputs", "d2h-tokens"])
@pytest.mark.parametrize("execution", ["eager"], ids=["eager"])
def test_a_cpu_run_measures_its_trials_into_the_record_model(execution, d2h_mode):
    spec = run_spec(test=TINY_TEST.model_copy(update={**QUICK, "execution": execution, "d2h_mode": d2h_mode}))
    metrics = measure_run(spec, CPU)
    assert isinstance(metrics, RunMetrics)
    assert tuple(sorted(metrics.model_dump(mode="json"))) == RunMetrics.keys()  # every key a CPU run writes
    assert metrics.execution == execution and metrics.d2h_mode == d2h_mode and metrics.device == "cpu"
    assert metrics.batches == 4 and metrics.samples_measured == 16
    assert 3 <= metrics.trials <= 4 and metrics.stop_reason in ("planned", "max_trials", "time_budget")
    serial = metrics.trial_samples_per_s.serial
    assert len(serial) == metrics.trials and metrics.trial_samples_per_s.pipelined == []
    assert metrics.samples_per_s == metrics.serial_samples_per_s == pytest.approx(float(np.median(serial)))
    ci = metrics.samples_per_s_ci
    assert ci.n == metrics.trials and ci.low <= metrics.samples_per_s <= ci.high
    assert metrics.forward_ms.median > 0 and metrics.forward_ms == metrics.batch_ms  # the forward is the CPU's batch
    assert metrics.fwd_ms == metrics.fwd_eager_ms == metrics.forward_ms.median
    assert metrics.h2d_ms.median is None and metrics.h2d_gbps is None and metrics.copies.startswith("skipped")
    per_sample = flops.bytes_per_sample(TINY_MODEL, list(TINY_TEST.tensor_shape), d2h_mode)
    assert (metrics.h2d_bytes_per_sample, metrics.d2h_bytes_per_sample) == (per_sample["h2d"], per_sample["d2h"])
    assert metrics.h2d_bytes_per_batch == metrics.d2h_bytes_per_batch == 0  # nothing crosses to a device
    assert (len(metrics.cpu_control.trials) == len(metrics.trial_disturbance) == len(metrics.trial_flags)
            == metrics.trials)
    assert metrics.timed_from <= metrics.timed_to and 0 < sum(metrics.trial_s) <= metrics.trials_s  # trials lie in it
    assert metrics.regime is None and metrics.gate is None and metrics.copy_pass is None
    assert metrics.telemetry.when == "off"
