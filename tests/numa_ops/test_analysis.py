from __future__ import annotations

import numpy as np
import pytest
from numa_ops.analysis import fit_power_law, penalty_ci


def test_penalty_ci_contains_the_true_penalty():
    rng = np.random.default_rng(3)
    local = list(1000 + rng.normal(0, 10, 12))
    remote = list(800 + rng.normal(0, 10, 12))
    out = penalty_ci(local, remote)
    assert out["low"] < 0.2 < out["high"]
    assert out["penalty"] == pytest.approx(0.2, abs=0.02)
    assert out["high"] - out["low"] < 0.05


def test_no_penalty_has_an_interval_around_zero():
    rng = np.random.default_rng(4)
    out = penalty_ci(list(1000 + rng.normal(0, 20, 10)), list(1000 + rng.normal(0, 20, 10)))
    assert out["low"] < 0 < out["high"]


def test_too_few_trials_give_no_interval():
    assert penalty_ci([1.0], [1.0, 2.0])["penalty"] is None


@pytest.mark.parametrize(
    ("exponent", "regime"),
    [pytest.param(1.0, "linear", id="linear"), pytest.param(1.6, "super-linear", id="super"), pytest.param(0.3, "saturation", id="saturation")],
)
def test_power_law_fit_recovers_exponent_and_regime(exponent, regime):
    x = [1e6, 2e6, 4e6, 8e6, 16e6]
    fit = fit_power_law(x, [3e-9 * v**exponent for v in x])
    assert fit.exponent == pytest.approx(exponent, abs=1e-9)
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.max_abs_residual < 1e-9
    assert fit.regime() == regime


def test_power_law_needs_three_points():
    assert fit_power_law([1.0, 2.0], [1.0, 2.0]) is None
