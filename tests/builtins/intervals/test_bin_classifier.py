"""Narrowest-region construction against brute force, and the bin classifier on a toy."""

from __future__ import annotations

import numpy as np
import pytest

from workbench_builtins.intervals.bin_classifier import (
    MuBinClassifier,
    narrowest_interval,
    posterior_median,
)


def brute_force_narrowest(p, edges, cl, n=4001):
    """Narrowest [a, b] with mass >= cl under the piecewise-constant density, by grid search."""
    p = np.asarray(p, float) / np.sum(p)
    grid = np.linspace(edges[0], edges[-1], n)
    cdf = np.interp(grid, edges, np.concatenate([[0], np.cumsum(p)]))
    best = (np.inf, None)
    j = 0
    for i in range(n):  # two pointers: smallest j with cdf[j] - cdf[i] >= cl
        j = max(j, i)
        while j < n and cdf[j] - cdf[i] < cl - 1e-12:
            j += 1
        if j == n:
            break
        if grid[j] - grid[i] < best[0]:
            best = (grid[j] - grid[i], (grid[i], grid[j]))
    return best[1]


def test_known_region():
    # HPD bins {2, 3} hold 0.7; the excess 0.0173 comes off the lower-density bin 3
    p = [0.05, 0.1, 0.4, 0.3, 0.1, 0.05]
    lo, hi = narrowest_interval(p, np.arange(7.0), 0.6827)
    assert lo == pytest.approx(2.0)
    assert hi == pytest.approx(4.0 - 0.0173 / 0.3)


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_random_unimodal(seed):
    rng = np.random.default_rng(seed)
    k = 12
    centre = rng.uniform(2, 10)
    edges = np.cumsum(np.concatenate([[0], rng.uniform(0.5, 1.5, k)]))
    mids = 0.5 * (edges[1:] + edges[:-1])
    p = np.exp(-0.5 * ((mids - centre) / rng.uniform(1, 3)) ** 2) * np.diff(edges)
    lo, hi = narrowest_interval(p, edges, 0.6827)
    blo, bhi = brute_force_narrowest(p, edges, 0.6827)
    width_tol = 2 * (edges[-1] - edges[0]) / 4000
    assert hi - lo == pytest.approx(bhi - blo, abs=width_tol)
    # exact mass
    cdf = np.concatenate([[0], np.cumsum(p / p.sum())])
    assert np.interp(hi, edges, cdf) - np.interp(lo, edges, cdf) == pytest.approx(0.6827, abs=1e-9)


def test_single_bin_and_median():
    lo, hi = narrowest_interval([0.0, 1.0, 0.0], np.array([0.0, 1.0, 2.0, 3.0]), 0.6827)
    assert (lo, hi) == pytest.approx((1.5 - 0.34135, 1.5 + 0.34135))
    assert posterior_median([0.25, 0.25, 0.5], np.array([0.0, 1.0, 2.0, 4.0])) == pytest.approx(2.0)


def test_bin_classifier_on_gaussian_toy_covers():
    """x ~ N(mu, 0.25): the narrowest region of the class probabilities covers mu 68%
    of the time (prior = training prior) and is about 2 sigma wide inside the range."""
    rng = np.random.default_rng(4)
    sigma = 0.25
    mu = rng.uniform(0, 3, 12000)
    x = mu + sigma * rng.normal(size=mu.size)
    edges = np.linspace(0, 3, 13)
    model = MuBinClassifier(edges, n_estimators=80, max_depth=3, n_jobs=1, seed=1)
    model.fit(x[:, None], mu)
    mu_t = rng.uniform(0, 3, 2000)
    x_t = mu_t + sigma * rng.normal(size=mu_t.size)
    probs = model.predict_proba(x_t[:, None])
    b = np.array([narrowest_interval(p, edges) for p in probs])
    cov = np.mean((b[:, 0] <= mu_t) & (mu_t <= b[:, 1]))
    assert abs(cov - 0.6827) < 3 * np.sqrt(0.6827 * 0.3173 / mu_t.size) + 0.03
    inside = (x_t > 1) & (x_t < 2)
    assert np.median(b[inside, 1] - b[inside, 0]) == pytest.approx(2 * sigma, rel=0.2)
