from __future__ import annotations

import pytest
from numa_ops.worker.stats import StoppingRule, confidence_interval, percentiles


def test_t_interval_on_known_samples():
    # mean 10, sample sd 1, n 4: half-width = t(0.975, 3) * 1 / 2 = 3.182446 / 2
    ci = confidence_interval([9.0, 9.0, 11.0, 11.0])
    assert ci["n"] == 4 and ci["mean"] == pytest.approx(10.0)
    sd = (4 / 3) ** 0.5  # sample sd of 9, 9, 11, 11
    assert ci["high"] - ci["mean"] == pytest.approx(3.182446 * sd / 2, rel=1e-5)
    assert ci["rel_half_width"] == pytest.approx(3.182446 * sd / 2 / 10, rel=1e-5)


def test_interval_of_one_value_is_unknown():
    ci = confidence_interval([5.0])
    assert ci["low"] is None and ci["rel_half_width"] is None and ci["median"] == 5.0


def test_identical_trials_have_zero_width():
    assert confidence_interval([3.0, 3.0, 3.0])["rel_half_width"] == 0.0


def test_percentiles():
    p = percentiles([float(i) for i in range(1, 101)])
    assert p["median"] == pytest.approx(50.5)
    assert p["p95"] == pytest.approx(95.05)
    assert p["p99"] == pytest.approx(99.01)
    assert p["min"] == 1.0 and p["max"] == 100.0
    assert percentiles([])["median"] is None


@pytest.mark.parametrize(
    ("series", "elapsed", "expected"),
    [
        pytest.param([[100.0, 100.5]], 0.0, (False, None), id="below-min-trials"),
        pytest.param([[100.0, 100.5, 100.2]], 0.0, (True, "target_met"), id="tight"),
        pytest.param([[100.0, 150.0, 80.0]], 0.0, (False, None), id="wide-keeps-going"),
        pytest.param([[100.0, 150.0, 80.0]], 99.0, (True, "time_budget"), id="time-out"),
        pytest.param([[100.0, 150.0, 80.0, 120.0, 90.0]], 0.0, (True, "max_trials"), id="trial-budget"),
        pytest.param([[100.0, 100.1, 100.2], [50.0, 90.0, 70.0]], 0.0, (False, None), id="every-mode-must-be-tight"),
    ],
)
def test_adaptive_stopping(series, elapsed, expected):
    rule = StoppingRule(target=0.02, min_trials=3, max_trials=5, max_time_s=60)
    assert rule.decide(series, elapsed) == expected


def test_stopping_converges_on_a_noisy_source():
    import random

    rng = random.Random(1)
    rule = StoppingRule(target=0.02, min_trials=3, max_trials=200, max_time_s=1e9)
    values: list[float] = []
    while True:
        values.append(1000 + rng.gauss(0, 30))
        done, why = rule.decide([values], 0.0)
        if done:
            break
    assert why == "target_met" and 3 < len(values) < 200
