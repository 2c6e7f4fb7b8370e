"""Neyman belt: Gaussian estimator -> closed-form interval and nominal coverage;
biased estimator -> still covers; save/load round trip; the strategy's inversion."""

from __future__ import annotations

import numpy as np
import pytest

from workbench_builtins.intervals.calibrated import CalibratedInterval, NeymanBelt, isotonic


def _belt(estimator, grid, n_toys, rng):
    stats = estimator(np.repeat(grid, n_toys), rng).reshape(len(grid), n_toys)
    return NeymanBelt.from_toys(grid, stats, 0.6827)


def test_gaussian_belt_matches_closed_form_and_covers():
    rng = np.random.default_rng(0)
    sigma = 0.3
    grid = np.linspace(-1, 5, 61)

    def est(mu, rng):
        return mu + sigma * rng.normal(size=mu.size)

    belt = _belt(est, grid, 4000, rng)
    t = np.linspace(0.5, 3.5, 31)
    mu_hat, lo, hi = belt.interval(t)
    # quantile noise of 4000 toys: ~0.007 per grid point (1 sigma)
    np.testing.assert_allclose(lo, t - sigma, atol=0.035)
    np.testing.assert_allclose(hi, t + sigma, atol=0.035)
    np.testing.assert_allclose(mu_hat, t, atol=0.035)
    n = 5000
    mu_true = rng.uniform(0.5, 3.5, n)
    _, lo, hi = belt.interval(est(mu_true, rng))
    cov = np.mean((lo <= mu_true) & (mu_true <= hi))
    assert abs(cov - 0.6827) < 3 * np.sqrt(0.6827 * 0.3173 / n)


def test_biased_scaled_estimator_is_calibrated():
    """t = 0.5 mu + 0.2 + N(0, 0.1 (1 + mu)): biased, heteroscedastic; coverage stays nominal
    and the interval is the exact inversion."""
    rng = np.random.default_rng(1)
    grid = np.linspace(0, 4, 41)

    def est(mu, rng):
        return 0.5 * mu + 0.2 + 0.1 * (1 + mu) * rng.normal(size=mu.size)

    belt = _belt(est, grid, 4000, rng)
    n = 5000
    mu_true = rng.uniform(0.5, 3.5, n)
    _, lo, hi = belt.interval(est(mu_true, rng))
    cov = np.mean((lo <= mu_true) & (mu_true <= hi))
    assert abs(cov - 0.6827) < 3 * np.sqrt(0.6827 * 0.3173 / n)
    # exact inversion: t = upper(mu16) = 0.5 mu16 + 0.2 + 0.1 (1 + mu16)
    t = 1.2
    _, l1, h1 = belt.interval(t)
    assert l1[0] == pytest.approx((t - 0.3) / 0.6, abs=0.03)
    assert h1[0] == pytest.approx((t - 0.1) / 0.4, abs=0.03)


def test_isotonic_and_roundtrip(tmp_path):
    y = np.array([1.0, 3.0, 2.0, 4.0, 3.5, 5.0])
    iso = isotonic(y)
    assert np.all(np.diff(iso) >= 0)
    assert iso.sum() == pytest.approx(y.sum())  # PAVA preserves the mean
    belt = NeymanBelt([0, 1, 2], [-1, 0, 1], [0, 1, 2], [1, 2, 3])
    belt.save(tmp_path / "belt.json")
    back = NeymanBelt.load(tmp_path / "belt.json")
    np.testing.assert_array_equal(back.upper, belt.upper)
    assert back.interval(1.0)[1][0] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="belt"):
        NeymanBelt.load(tmp_path / "missing.json")


class _FakeInner:
    """An 'inner strategy' whose estimator is Gaussian: the calibrated strategy's fast path."""

    sigma = 0.2

    def predict_features(self, X):
        t = np.asarray(X)[:, 0]
        return t, t - 0.01, t + 0.01, [{}] * len(t)

    def simulate_statistic(self, mu, seed, mc_noise=None):
        rng = np.random.default_rng(seed)
        return mu + self.sigma * rng.normal(size=np.size(mu))


def test_strategy_inverts_belt_from_inner_simulation():
    cal = CalibratedInterval(n_grid=41, n_toys=2000, mu_grid_range=(-1, 4), inflation=1.0)
    cal.inner = _FakeInner()
    grid = np.linspace(-1, 4, 41)
    stats = cal.inner.simulate_statistic(np.repeat(grid, 2000), 3).reshape(41, 2000)
    cal.belt = NeymanBelt.from_toys(grid, stats)
    mu_hat, lo, hi, info = cal.predict_features(np.array([[1.0], [2.0]]))
    np.testing.assert_allclose(lo, [0.8, 1.8], atol=0.03)
    np.testing.assert_allclose(hi, [1.2, 2.2], atol=0.03)
    assert info[0]["method"] == "calibrated"
    with pytest.raises(ValueError, match="statistic"):
        CalibratedInterval(statistic="mode")
