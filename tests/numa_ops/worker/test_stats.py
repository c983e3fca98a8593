from __future__ import annotations

import numpy as np
import pytest
from numa_ops.worker.stats import StoppingRule, confidence_interval, order_rank, percentiles
from scipy import stats


def test_median_interval_on_known_samples():
    # n 9: the pair (x_(2), x_(8)) covers the median with 1 - 2 * P(Binom(9, .5) <= 1) = 0.9609
    values = [float(v) for v in (5, 1, 9, 3, 7, 2, 8, 4, 6)]
    ci = confidence_interval(values)
    assert ci["n"] == 9 and ci["median"] == 5.0 and ci["mean"] == pytest.approx(5.0)
    assert (ci["low"], ci["high"]) == (2.0, 8.0)
    assert ci["level"] == pytest.approx(1 - 2 * 10 / 512)
    assert ci["rel_half_width"] == pytest.approx(3 / 5)
    assert "median" in ci["method"]


@pytest.mark.parametrize("n", range(6, 41), ids=lambda n: f"n{n}")
def test_interval_matches_scipy_quantile_test(n):
    values = list(np.random.default_rng(n).normal(100, 3, n))
    ci = confidence_interval(values)
    ref = stats.quantile_test(values, q=100, p=0.5).confidence_interval(0.95)
    assert (ci["low"], ci["high"]) == pytest.approx((ref.low, ref.high))
    assert ci["level"] >= 0.95


@pytest.mark.parametrize(("n", "level"), [(2, 0.5), (3, 0.75), (5, 0.9375)], ids=["n2", "n3", "n5"])
def test_few_trials_give_the_range_and_say_its_level(n, level):
    ci = confidence_interval([float(v) for v in range(1, n + 1)])
    assert (ci["low"], ci["high"]) == (1.0, float(n)) and ci["level"] == pytest.approx(level)
    assert order_rank(n)[1] < 0.95


def test_interval_of_one_value_is_unknown():
    ci = confidence_interval([5.0])
    assert ci["low"] is None and ci["rel_half_width"] is None and ci["median"] == 5.0


def test_identical_trials_have_zero_width():
    assert confidence_interval([3.0] * 6)["rel_half_width"] == 0.0


def test_an_outlier_trial_does_not_move_the_median_or_its_interval():
    # a trial when another process took the core: the mean moves by a third, the median not at all
    steady = [343.0, 345.0, 344.0, 346.0, 342.0, 345.0, 344.0, 343.0, 345.0]
    ci = confidence_interval([37.0, *steady])
    assert ci["median"] == pytest.approx(344.0) and ci["low"] >= 342.0
    assert ci["rel_half_width"] < 0.01


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
        pytest.param([[100.0, 100.5]], 99.0, (True, "time_budget"), id="time-out-in-the-pilots"),
        pytest.param([[100.0, 100.5, 100.2]], 0.0, (True, "planned"), id="tight-pilots-need-no-more"),
        pytest.param([[100.0, 150.0, 80.0]], 0.0, (False, None), id="wide-pilots-go-on"),
        pytest.param([[100.0, 150.0, 80.0, 100.0, 100.0]], 0.0, (True, "max_trials"), id="wide-pilots-end-at-the-budget"),
        pytest.param([[100.0, 150.0, 80.0]], 99.0, (True, "time_budget"), id="time-out"),
        pytest.param([[100.0, 101.6, 98.4]], 0.0, (False, None), id="pilots-fix-more-trials"),
        pytest.param([[100.0, 101.6, 98.4, 100.0]], 0.0, (True, "planned"), id="planned-trials-reached"),
        pytest.param([[100.0, 101.6, 98.4]], 99.0, (True, "time_budget"), id="time-out-after-the-pilots"),
        pytest.param([[100.0, 100.1, 100.2], [50.0, 90.0, 70.0]], 0.0, (False, None), id="every-mode-counts"),
    ],
)
def test_two_stage_stopping(series, elapsed, expected):
    rule = StoppingRule(target=0.02, min_trials=3, max_trials=5, max_time_s=60)
    assert rule.decide(series, elapsed) == expected


def test_the_pilots_fix_the_number_of_trials():
    rule = StoppingRule(target=0.02, min_trials=6, max_trials=100, max_time_s=1e9)
    pilots = [100.0, 103.0, 97.0, 101.0, 99.0, 100.0]  # sd 2%: (1.96 * 1.2533 * 0.02 / 0.02)^2 = 6.03 -> 7
    assert rule.trials_needed([pilots]) == 7
    # later trials do not change the number the pilots fixed
    assert rule.trials_needed([pilots + [50.0, 200.0]]) == 7
    assert rule.decide([pilots], 0.0) == (False, None)
    assert rule.decide([pilots + [100.0]], 0.0) == (True, "planned")


def _simulate(draw, truth: float, reps: int, seed: int) -> float:
    """Coverage of the run's interval under the engine's own stopping (defaults: 6 pilots, up to 20)."""
    rule = StoppingRule(target=0.02, min_trials=6, max_trials=20, max_time_s=1e9)
    rng = np.random.default_rng(seed)
    covered = 0
    for _ in range(reps):
        values: list[float] = []
        while not rule.decide([values], 0.0)[0] if values else True:
            values.append(float(draw(rng)))
        ci = confidence_interval(values)
        covered += ci["low"] <= truth <= ci["high"]
    return covered / reps


def _two_state(p_slow: float):
    def draw(rng):
        return rng.normal(85, 0.85) if rng.random() < p_slow else rng.normal(100, 1.0)

    big = np.random.default_rng(99)
    truth = float(np.median([draw(big) for _ in range(400_000)]))
    return draw, truth


def _gamma_case():
    truth = 100 + 3 * stats.gamma(2).median()
    return (lambda rng: 100 + 3 * rng.gamma(2.0)), truth


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(lambda: ((lambda rng: rng.normal(100, 1)), 100.0), id="normal-cv1"),
        pytest.param(lambda: ((lambda rng: rng.normal(100, 3)), 100.0), id="normal-cv3"),
        pytest.param(lambda: ((lambda rng: rng.normal(100, 5)), 100.0), id="normal-cv5"),
        pytest.param(lambda: ((lambda rng: 100 * np.exp(rng.normal(0, 0.05))), 100.0), id="lognormal-skewed"),
        pytest.param(_gamma_case, id="gamma-skewed"),
        pytest.param(lambda: _two_state(0.3), id="two-state-30pct-slow"),
        pytest.param(lambda: _two_state(0.45), id="two-state-45pct-slow"),
    ],
)
def test_engine_intervals_keep_their_coverage_under_adaptive_stopping(case):
    draw, truth = case()
    coverage = _simulate(draw, truth, reps=2000, seed=7)
    assert coverage >= 0.93, f"95% intervals covered the true median {coverage:.1%} of the time"
