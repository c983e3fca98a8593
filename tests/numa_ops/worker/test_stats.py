from __future__ import annotations

import numpy as np
import pytest
from numa_ops.worker.stats import (
    StoppingRule,
    confidence_interval,
    order_half_width,
    order_rank,
    percentiles,
    sd_bound,
)
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
        pytest.param([[100.0, 150.0, 80.0, 100.0, 100.0]], 0.0, (True, "max_trials"),
                     id="wide-pilots-end-at-the-budget"),
        pytest.param([[100.0, 150.0, 80.0]], 99.0, (True, "time_budget"), id="time-out"),
        pytest.param([[100.0, 101.6, 98.4]], 0.0, (False, None), id="pilots-fix-more-trials"),
        pytest.param([[100.0, 101.6, 98.4, 100.0]], 0.0, (False, None), id="planned-beyond-the-budget-goes-on"),
        pytest.param([[100.0, 101.6, 98.4, 100.0, 100.0]], 0.0, (True, "max_trials"),
                     id="planned-beyond-the-budget-ends"),
        pytest.param([[100.0, 101.6, 98.4]], 99.0, (True, "time_budget"), id="time-out-after-the-pilots"),
        pytest.param([[100.0, 100.1, 100.2], [50.0, 90.0, 70.0]], 0.0, (False, None), id="every-mode-counts"),
    ],
)
def test_two_stage_stopping(series, elapsed, expected):
    rule = StoppingRule(target=0.02, min_trials=3, max_trials=5, max_time_s=60)
    assert rule.decide(series, elapsed) == expected


def test_the_pilots_fix_the_number_of_trials():
    rule = StoppingRule(target=0.02, min_trials=6, max_trials=100, max_time_s=1e9)
    pilots = [100.0, 103.0, 97.0, 101.0, 99.0, 100.0]  # sd 2%, its 80% upper bound 2.9%: 17 trials
    need = rule.trials_needed([pilots])
    assert need == 17
    assert order_half_width(need) * sd_bound(pilots) / 100 <= 0.02 < order_half_width(need - 1) * sd_bound(pilots) / 100
    # later trials do not change the number the pilots fixed while the planned interval reaches the target
    tight = pilots + [100.0] * (need - len(pilots))
    assert rule.trials_needed([tight + [50.0, 200.0]]) == need
    assert rule.decide([tight[:-1]], 0.0) == (False, None)
    assert rule.decide([tight], 0.0) == (True, "planned")


def test_a_planned_number_that_misses_the_target_is_planned_again():
    rule = StoppingRule(target=0.02, min_trials=6, max_trials=100, max_time_s=1e9)
    pilots = [100.0, 103.0, 97.0, 101.0, 99.0, 100.0]
    wide = pilots + [90.0, 110.0] * 4 + [100.0]  # 15 trials: the interval at 13 is +-3%
    assert confidence_interval(wide[:13])["rel_half_width"] > 0.02
    assert rule.trials_needed([wide]) > 13
    assert rule.decide([wide[:13]], 0.0) == (False, None)


def test_expected_order_statistic_half_width_matches_simulation():
    rng = np.random.default_rng(3)
    for n in (10, 20, 40):
        k = order_rank(n)[0]
        draws = np.sort(rng.normal(0, 1, (20_000, n)), axis=1)
        assert order_half_width(n) == pytest.approx(np.mean(draws[:, n - k] - draws[:, k - 1]) / 2, rel=0.03)


def _stopped(values: np.ndarray, rule: StoppingRule) -> list[float]:
    """The trials a run keeps under ``rule`` (the plan depends only on the trials before it)."""
    return list(values[: rule.trials_needed([list(values)])])


def _two_state(p_slow: float):
    def draw(rng, shape):
        slow = rng.random(shape) < p_slow
        return np.where(slow, rng.normal(85, 0.85, shape), rng.normal(100, 1.0, shape))

    truth = float(np.median(draw(np.random.default_rng(99), 400_000)))
    return draw, truth


def _gamma_case():
    return (lambda rng, shape: 100 + 3 * rng.gamma(2.0, size=shape)), 100 + 3 * stats.gamma(2).median()


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(lambda: ((lambda rng, shape: rng.normal(100, 1, shape)), 100.0), id="normal-cv1"),
        pytest.param(lambda: ((lambda rng, shape: rng.normal(100, 2, shape)), 100.0), id="normal-cv2"),
        pytest.param(lambda: ((lambda rng, shape: rng.normal(100, 5, shape)), 100.0), id="normal-cv5"),
        pytest.param(lambda: ((lambda rng, shape: 100 * np.exp(rng.normal(0, 0.05, shape))), 100.0),
                     id="lognormal-skewed"),
        pytest.param(_gamma_case, id="gamma-skewed"),
        pytest.param(lambda: _two_state(0.3), id="two-state-30pct-slow"),
        pytest.param(lambda: _two_state(0.45), id="two-state-45pct-slow"),
    ],
)
def test_engine_intervals_keep_their_coverage_under_adaptive_stopping(case):
    draw, truth = case()
    rule = StoppingRule(target=0.02, min_trials=6, max_trials=20, max_time_s=1e9)
    runs = draw(np.random.default_rng(7), (500, 20))
    covered = np.mean([(ci := confidence_interval(_stopped(v, rule)))["low"] <= truth <= ci["high"] for v in runs])
    assert covered >= 0.93, f"95% intervals covered the true median {covered:.1%} of the time"


def test_runs_at_cv_2pct_reach_a_2pct_target():
    rule = StoppingRule(target=0.02, min_trials=6, max_trials=200, max_time_s=1e9)
    runs = np.random.default_rng(8).normal(100, 2, (1000, 200))
    kept = [confidence_interval(_stopped(v, rule)) for v in runs]
    assert np.mean([ci["rel_half_width"] <= 0.02 for ci in kept]) >= 0.80
    assert np.mean([ci["low"] <= 100 <= ci["high"] for ci in kept]) >= 0.93
