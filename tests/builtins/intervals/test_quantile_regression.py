"""Quantile regression on a toy with a known answer, the aggregated features, the
mu priors and the post-hoc tweaks."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.plugin.registry import get_registry
from workbench.systematics.nuisance import PRIORS
from workbench.toolkit.aggregate import (
    AggregateDefinition,
    MuPrior,
    QuantileRegressor,
    post_process,
    prior_ppf,
)


def test_quantile_regressor_recovers_gaussian_quantiles():
    """x ~ N(mu, sigma), mu ~ U(0, 3): away from the edges mu | x ~ N(x, sigma), so the
    15.87/50/84.13% quantiles are x - sigma, x, x + sigma."""
    rng = np.random.default_rng(1)
    sigma = 0.2
    mu = rng.uniform(0, 3, 20000)
    x = mu + sigma * rng.normal(size=mu.size)
    noise = rng.normal(size=mu.size)  # an irrelevant feature
    reg = QuantileRegressor(n_estimators=400, max_depth=3, learning_rate=0.1, n_jobs=1, seed=3)
    reg.fit(np.column_stack([x, noise]), mu)
    xt = np.linspace(1.0, 2.0, 41)
    q = reg.predict(np.column_stack([xt, np.zeros_like(xt)]))
    assert np.all(np.diff(q, axis=1) >= 0)
    # trees are step functions: tight on average, looser point by point
    for col, truth in ((1, xt), (0, xt - sigma), (2, xt + sigma)):
        assert np.mean(np.abs(q[:, col] - truth)) < 0.025
        np.testing.assert_allclose(q[:, col], truth, atol=0.08)
    # the conformal shifts are small corrections here (the model is not overfitting much)
    assert max(abs(v) for v in reg.shifts) < 0.05
    # calibration on fresh toys: the [q16, q84] band covers 68.27%
    mu2 = rng.uniform(0.8, 2.2, 4000)
    x2 = mu2 + sigma * rng.normal(size=mu2.size)
    q2 = reg.predict(np.column_stack([x2, rng.normal(size=mu2.size)]))
    cov = np.mean((q2[:, 0] <= mu2) & (mu2 <= q2[:, 2]))
    assert abs(cov - 0.6827) < 3 * np.sqrt(0.6827 * 0.3173 / mu2.size) + 0.02


@pytest.mark.parametrize("kind", ["uniform", "log-uniform", "normal"])
def test_mu_prior_draws_follow_their_cdf(kind):
    from scipy import stats

    prior = MuPrior(kind, 0.1, 3.0, 1.0, 0.2)
    draws = prior.draw(20000, np.random.default_rng(0))
    assert draws.min() >= 0.1 and draws.max() <= 3.0
    if kind == "uniform":
        cdf = stats.uniform(0.1, 2.9).cdf
    elif kind == "log-uniform":
        cdf = stats.loguniform(0.1, 3.0).cdf
    else:
        cdf = stats.truncnorm((0.1 - 1) / 0.2, (3 - 1) / 0.2, loc=1, scale=0.2).cdf
    assert stats.kstest(draws, cdf).pvalue > 1e-3
    with pytest.raises(ValueError, match="mu_prior"):
        MuPrior("flat", 0.1, 3.0)


def test_prior_ppf_matches_clipped_prior_draws():
    rng = np.random.RandomState(0)
    for name in ("tes", "soft_met"):
        draws = np.array([PRIORS[name].draw(rng) for _ in range(4000)])
        qs = np.array([0.1, 0.5, 0.9])
        np.testing.assert_allclose(prior_ppf(PRIORS[name], qs), np.quantile(draws, qs),
                                   rtol=0.05)


def _toy_events(n, rng, shift=1.0):
    cols = {"PRI_had_pt": rng.exponential(30, n) * shift + 26, "PRI_met": rng.exponential(20, n)}
    return cols


class _Cols:
    """A minimal stand-in with the Events interface the definition uses."""

    def __init__(self, cols, weights):
        self.cols, self.w = cols, weights

    def __getitem__(self, k):
        return self.cols[k]

    def __contains__(self, k):
        return k == "weights"

    @property
    def weights(self):
        return self.w


def test_aggregate_features_match_direct_computation():
    rng = np.random.default_rng(2)
    n = 200000
    cols = _toy_events(n, rng)
    scores = rng.uniform(size=n)
    signal = rng.uniform(size=n) < 0.1
    ev = _Cols(cols, np.ones(n))
    d = AggregateDefinition.build(scores, ev, signal, ("PRI_had_pt", "PRI_met"), 10, 40,
                                  (0.25, 0.5, 0.75))
    # a PE drawn from a shifted distribution: binned features track the exact ones
    m = 50000
    pe_cols = _toy_events(m, rng, shift=1.05)
    X = d.transform(d.marginals(rng.uniform(size=m), _Cols(pe_cols, np.ones(m))))[0]
    names = d.names
    assert len(names) == X.size
    assert X[names.index("log_total")] == pytest.approx(np.log1p(m), rel=1e-6)
    for f in ("PRI_had_pt", "PRI_met"):
        assert X[names.index(f"{f}_mean")] == pytest.approx(pe_cols[f].mean(), rel=0.01)
        for q in (0.25, 0.5, 0.75):
            assert X[names.index(f"{f}_q{q:g}")] == pytest.approx(
                np.quantile(pe_cols[f], q), rel=0.02)
    # the shift is visible in the tau-pT mean (NP proxy)
    assert X[names.index("PRI_had_pt_mean")] > np.mean(cols["PRI_had_pt"]) + 0.5


def test_post_process_tweaks_are_off_by_default_and_explicit():
    mu, lo, hi = post_process([1.0], [0.8], [1.3], 1.0, None)
    assert (mu[0], lo[0], hi[0]) == (1.0, 0.8, 1.3)
    mu, lo, hi = post_process([1.0], [0.8], [1.3], 2.0, None)
    assert lo[0] == pytest.approx(0.6) and hi[0] == pytest.approx(1.6)
    mu, lo, hi = post_process([0.15], [-0.2], [0.5], 1.0, (0.1, 3.0))
    assert lo[0] == 0.1 and hi[0] == 0.5


def test_registered_with_validated_parameters():
    reg = get_registry()
    assert {"quantile-regression", "bin-classifier", "hybrid", "calibrated"} <= set(
        reg.names("interval"))
    assert "prior-dependence" in reg.names("diagnostic")
    from workbench.plugin.registry import PluginError

    with pytest.raises(PluginError, match="mu_prior"):
        reg.create("interval", "quantile-regression", {"mu_prior": "flat"})
    with pytest.raises(PluginError, match="unknown parameter"):
        reg.create("interval", "quantile-regression", {"n_tress": 3})


def test_conformal_shift_restores_coverage_of_an_overfitted_regressor():
    """Deep trees without early stopping fit the noise and under-cover; the split-conformal
    shifts bring fresh-toy coverage back to 68.27%."""
    rng = np.random.default_rng(5)
    mu = rng.uniform(0, 3, 4000)
    X = np.column_stack([mu + 0.3 * rng.normal(size=mu.size), rng.normal(size=(mu.size, 3))])
    reg = QuantileRegressor(n_estimators=150, max_depth=8, learning_rate=0.3,
                            early_stopping_rounds=0, n_jobs=1, seed=2).fit(X, mu)
    mu_t = rng.uniform(0, 3, 4000)
    X_t = np.column_stack([mu_t + 0.3 * rng.normal(size=mu_t.size),
                           rng.normal(size=(mu_t.size, 3))])
    raw, cal = reg._raw(X_t), reg.predict(X_t)
    cov_raw = np.mean((raw[:, 0] <= mu_t) & (mu_t <= raw[:, 2]))
    cov_cal = np.mean((cal[:, 0] <= mu_t) & (mu_t <= cal[:, 2]))
    sigma = np.sqrt(0.6827 * 0.3173 / mu_t.size)
    assert cov_raw < 0.6827 - 3 * sigma
    assert abs(cov_cal - 0.6827) < 3 * sigma + 0.01
