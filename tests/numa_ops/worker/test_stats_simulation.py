"""Simulations of the paired interval, its stopping rule, its MDE and the control adjustment on a host
whose CPU speed flips between two states (control ~3e5 vs ~7e5 ops/s, Markov switching over a few
trials) with a launch-bound rate that follows it. Fixed seeds: every number here is deterministic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numa_ops.worker.stats import PairedStoppingRule, adjusted_paired_interval, paired_interval

FAST, SLOW = 7e5, 3e5
SUBSTEPS = 4  # the state may switch within a trial


def two_state_trials(
    rng: np.random.Generator, reps: int, trials: int, q_fs: float = 0.06, q_sf: float = 0.10,
    gpu: float = 0.85, noise: float = 0.01, control_noise: float = 0.03,
) -> tuple[np.ndarray, np.ndarray]:
    """ln rate and ln CPU-speed control per trial, (reps, trials): a batch costs ``gpu`` plus a CPU part
    that is 7/3 as long in the slow state (the slow rate is ~0.83 of the fast); the control is the mean
    of the CPU speed at the trial's start and end. Lag-1 autocorrelation of ln rate ~0.6."""
    slow = rng.random(reps) < q_fs / (q_fs + q_sf)  # stationary start
    steps = trials * SUBSTEPS + 1
    states = np.empty((reps, steps), dtype=bool)
    u = rng.random((reps, steps))
    for i in range(steps):
        states[:, i] = slow
        slow = np.where(slow, u[:, i] >= q_sf, u[:, i] < q_fs)
    speed = np.where(states, SLOW, FAST)
    batch = (gpu + (1 - gpu) * FAST / speed[:, :-1]).reshape(reps, trials, SUBSTEPS).mean(axis=2)
    log_rate = -np.log(batch) + rng.normal(0, noise, (reps, trials))
    control = np.log((speed[:, :-1:SUBSTEPS] + speed[:, SUBSTEPS::SUBSTEPS]) / 2)
    return log_rate, control + rng.normal(0, control_noise, (reps, trials))


def abba(blocks: int) -> np.ndarray:
    """Arm of each trial: even blocks ABBA, odd blocks BAAB."""
    return np.concatenate([[0, 1, 1, 0] if b % 2 == 0 else [1, 0, 0, 1] for b in range(blocks)])


def paired_trials(seed: int, reps: int, blocks: int, ratio: float, **model: float):
    """Block differences (reps, blocks) of two arms, arm 1's rate ``ratio`` times arm 0's, and the trials."""
    order = abba(blocks)
    log_rate, control = two_state_trials(np.random.default_rng(seed), reps, len(order), **model)
    log_rate = log_rate + np.where(order == 1, math.log(ratio), 0.0)
    diffs = (log_rate[:, order == 1].reshape(reps, blocks, 2).mean(axis=2)
             - log_rate[:, order == 0].reshape(reps, blocks, 2).mean(axis=2))
    return diffs, log_rate, control, order


def adjusted(log_rate: np.ndarray, control: np.ndarray, order: np.ndarray, blocks: int) -> dict:
    block = np.repeat(np.arange(blocks), 4)
    keep = block < blocks
    pick = {a: (order[: len(keep)] == a) & keep for a in (0, 1)}
    return adjusted_paired_interval(
        {a: list(log_rate[: len(keep)][m]) for a, m in pick.items()},
        {a: list(control[: len(keep)][m]) for a, m in pick.items()},
        {a: list(block[m]) for a, m in pick.items()}, arm=1, ref=0,
    )


@pytest.mark.parametrize(
    ("ratio", "target", "seed"),
    [
        pytest.param(1.0, 0.04, 11, id="a-a-target-4pct"),
        pytest.param(0.95, 0.04, 12, id="penalty-5pct-target-4pct"),
        pytest.param(1.0, 0.02, 13, id="a-a-target-2pct"),
        pytest.param(0.95, 0.02, 14, id="penalty-5pct-target-2pct"),
    ],
)
def test_paired_interval_covers_under_the_stopping_rule(ratio, target, seed):
    reps, max_blocks = 300, 200
    diffs, log_rate, control, order = paired_trials(seed, reps, max_blocks, ratio)
    rule = PairedStoppingRule(target=target, min_blocks=6, max_blocks=max_blocks, max_time_s=math.inf)
    covered = adj_covered = reached = budget_allows = 0
    narrower = []
    for r in range(reps):
        n = rule.blocks_needed([list(diffs[r])])
        plain = paired_interval(diffs[r, :n])
        adj = adjusted(log_rate[r, : 4 * n], control[r, : 4 * n], order[: 4 * n], n)
        covered += plain["low_ln"] <= math.log(ratio) <= plain["high_ln"]
        adj_covered += adj["low_ln"] <= math.log(ratio) <= adj["high_ln"]
        narrower.append(adj["half_width"] / plain["half_width"])
        if n < max_blocks:
            budget_allows += 1
            reached += plain["half_width"] <= target
    assert covered / reps >= 0.93, f"plain paired intervals covered {covered / reps:.1%}"
    assert adj_covered / reps >= 0.93, f"adjusted paired intervals covered {adj_covered / reps:.1%}"
    assert budget_allows >= 0.9 * reps and reached / budget_allows >= 0.80
    assert np.median(narrower) < 0.8  # the control explains most of the two-state noise


@pytest.mark.parametrize("blocks", [12, 20, 60], ids=lambda b: f"{b}-blocks")
def test_a_penalty_of_the_stated_mde_is_found_with_its_power(blocks):
    # the MDE the A/A runs state (their median), planted as a penalty, is found (interval excludes 0)
    reps = 2000
    aa, *_ = paired_trials(21, reps, blocks, 1.0)
    mde = float(np.median([paired_interval(d)["mde"] for d in aa]))
    planted, *_ = paired_trials(22, reps, blocks, 1 / (1 + mde))
    found = np.mean([paired_interval(d)["verdict"] == "measured" for d in planted])
    assert found >= 0.75, f"a penalty of the stated MDE {mde:.1%} was found {found:.1%} of the time"


@pytest.mark.parametrize(
    ("control_noise", "explains"),
    [pytest.param(0.03, True, id="control-tracks-the-speed"), pytest.param(None, False, id="control-is-noise")],
)
def test_the_control_adjustment_narrows_only_where_the_control_explains_the_noise(control_noise, explains):
    reps, blocks = 400, 20
    diffs, log_rate, control, order = paired_trials(31, reps, blocks, 0.95, control_noise=control_noise or 0.03)
    if control_noise is None:  # a control that measures nothing of the host
        control = np.random.default_rng(32).normal(13, 0.2, control.shape)
    covered, ratios = 0, []
    for r in range(reps):
        adj = adjusted(log_rate[r], control[r], order, blocks)
        covered += adj["low_ln"] <= math.log(0.95) <= adj["high_ln"]
        ratios.append(adj["half_width"] / paired_interval(diffs[r])["half_width"])
    assert covered / reps >= 0.93
    assert (np.median(ratios) < 0.8) if explains else (np.median(ratios) > 0.95)
