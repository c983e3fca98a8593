from __future__ import annotations

import duckdb
import numpy as np
import pytest
from numa_ops import report, store
from numa_ops.analysis import fit_power_law, penalty_ci

from tests.numa_ops import planted


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


# Acceptance: planted answers in synthetic run records, recovered through the DuckDB store and the report.
# The noise is seeded (seed 0); that a 95% interval holds the planted value in ~95% of draws, not only in
# this one, is what test_penalty_ci_covers_the_planted_value_in_most_repeats checks.


def _loaded(tmp_path, write, *args):
    folder, db = tmp_path / "f1", tmp_path / "db.duckdb"
    write(folder, *args)
    store.load([folder], db)
    return db


@pytest.mark.parametrize(("runs", "unit"), [pytest.param(3, "trials", id="3-runs"), pytest.param(8, "runs", id="8-runs")])
def test_planted_20pct_remote_penalty_is_recovered_with_a_ci_containing_it(tmp_path, runs, unit):
    db = _loaded(tmp_path, planted.write_penalty_runs, 0.20, 0, runs)
    (row,) = report.numa_penalties(db, "f1").to_dict("records")
    assert row["resampled"].startswith(unit)  # few runs: their trials are resampled; enough runs: the runs
    assert row["95% CI low"] < 0.20 < row["95% CI high"]
    assert row["penalty"] == pytest.approx(0.20, abs=0.01)
    assert row["95% CI high"] - row["95% CI low"] < 0.03  # an interval that says something
    with duckdb.connect(str(db), read_only=True) as con:
        penalty, status = con.execute("SELECT throughput_penalty, status FROM numa_penalty").fetchone()
    assert status == "measured" and penalty == pytest.approx(0.20, abs=0.01)


def test_aa_control_gives_a_ci_containing_zero(tmp_path):
    db = _loaded(tmp_path, planted.write_penalty_runs, 0.0, 0)  # both placements drawn from one distribution
    (row,) = report.numa_penalties(db, "f1").to_dict("records")
    assert row["95% CI low"] < 0 < row["95% CI high"]
    assert row["95% CI high"] - row["95% CI low"] < 0.03


@pytest.mark.parametrize(("penalty", "seed0"), [pytest.param(0.2, 100, id="20pct"), pytest.param(0.0, 200, id="aa")])
def test_penalty_ci_covers_the_planted_value_in_most_repeats(penalty, seed0):
    """A 95% interval that holds the truth in one lucky draw is not enough: check its coverage over 100 draws."""
    covered = 0
    for seed in range(seed0, seed0 + 100):
        rng = np.random.default_rng(seed)
        local = 1000 * (1 + rng.normal(0, 0.015, 18))
        remote = 1000 * (1 - penalty) * (1 + rng.normal(0, 0.015, 18))
        ci = penalty_ci(list(local), list(remote), seed=seed)
        covered += ci["low"] < penalty < ci["high"]
    assert covered >= 88


@pytest.mark.parametrize(
    ("exponent", "regime"),
    [pytest.param(0.75, "saturation", id="saturation"), pytest.param(1.0, "linear", id="linear"),
     pytest.param(1.4, "super-linear", id="super-linear")],
)
def test_planted_power_law_is_recovered_within_5pct_of_its_exponent(tmp_path, exponent, regime):
    db = _loaded(tmp_path, planted.write_power_law_runs, exponent, 5)
    (law,) = report.scaling_laws(db, "f1").to_dict("records")
    assert law["exponent"] == pytest.approx(exponent, rel=0.05)
    assert law["models"] == 7 and law["regime"] == regime and law["R2"] > 0.98
