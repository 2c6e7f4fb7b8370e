"""Tests of the cut-and-count strategy: the closed-form profile against a numerical
one, the interval against the Gaussian limit, and coverage in a real workbench run
on the built-in simulator."""

import numpy as np
import pytest
import workbench_example_plugin
from scipy import optimize, stats
from workbench_example_plugin import poisson_profile_interval, profiled_background, q_mu

from workbench.plugin.registry import build_registry
from workbench.run.runner import run
from workbench.spec import parse_spec


def _numeric_q(mu, n, s, b, sigma):
    """-2 ln lambda with the background normalisation profiled numerically."""

    def nll(k):
        nu = mu * s + k * b
        return np.inf if nu <= 0 else nu - n * np.log(nu) + 0.5 * ((k - 1) / sigma) ** 2

    k_min = max(1e-12, -mu * s / b + 1e-12)
    k_max = 1 + 40 * sigma + abs(mu) * s / b + n / b
    best = optimize.minimize_scalar(nll, bounds=(k_min, k_max), method="bounded",
                                    options={"xatol": 1e-13})
    return 2 * (best.fun - (n - n * np.log(n)))


@pytest.mark.parametrize("seed", range(5))
def test_closed_form_profile_matches_numerical_profile(seed):
    rng = np.random.default_rng(seed)
    s, b = rng.uniform(5, 200), rng.uniform(10, 5000)
    sigma = rng.choice([0.01, 0.1, 0.3])
    n = float(rng.poisson(s + b))
    for mu in rng.uniform(-1, 4, 6):
        k = profiled_background(mu, n, s, b, sigma)
        assert np.isclose(float(q_mu(mu, n, s, b, sigma)), _numeric_q(mu, n, s, b, sigma),
                          rtol=1e-6, atol=1e-6)
        assert mu * s + k * b > 0


def test_interval_endpoints_are_where_q_crosses_chi2_quantile_and_match_gaussian_limit():
    n, s, b, sigma = 40_000.0, 300.0, 39_700.0, 0.01
    mu_hat, lo, hi = poisson_profile_interval(n, s, b, sigma)
    assert mu_hat == pytest.approx((n - b) / s)
    crit = stats.chi2.ppf(0.6827, 1)  # 0.99995: "q = 1" for exactly 68.27%
    assert float(q_mu(lo, n, s, b, sigma)) == pytest.approx(crit, abs=1e-7)
    assert float(q_mu(hi, n, s, b, sigma)) == pytest.approx(crit, abs=1e-7)
    # large counts: half-width -> sqrt(n + (sigma b)^2) / s
    gauss = np.sqrt(n + (sigma * b) ** 2) / s
    assert 0.5 * (hi - lo) == pytest.approx(gauss, rel=0.01)
    # a 95% interval is wider by the chi-square quantile ratio
    _, lo95, hi95 = poisson_profile_interval(n, s, b, sigma, 0.95)
    assert (hi95 - lo95) / (hi - lo) == pytest.approx(np.sqrt(stats.chi2.ppf(0.95, 1)), rel=0.01)


def test_known_background_interval_has_poisson_coverage():
    """sigma = 0: the likelihood-ratio interval for a Poisson mean, checked by simulation."""
    s, b = 10.0, 30.0
    rng = np.random.default_rng(7)
    mu_true = 1.5
    ns = rng.poisson(mu_true * s + b, 4000)
    covered = [lo <= mu_true <= hi for lo, hi in
               (poisson_profile_interval(float(n), s, b, 0.0)[1:] for n in np.unique(ns))]
    table = dict(zip(np.unique(ns), covered))
    coverage = np.mean([table[n] for n in ns])
    assert abs(coverage - 0.6827) < 0.04  # discreteness of the Poisson at ~45 counts


def _registry():
    """The installed plugin through its entry point, or the module when not installed."""
    registry = build_registry()
    if "cut-and-count" in registry.names("interval"):
        return registry
    return build_registry(extra_plugins={"example": workbench_example_plugin})


def _spec(tmp_path, **overrides):
    raw = {
        "name": "example",
        "seed": 3,
        "data": {
            "generator": "simulator",
            "train": {"htautau": 3000, "ztautau": 6000, "ttbar": 1500, "diboson": 500},
            "holdout": {"htautau": 3000, "ztautau": 20000, "ttbar": 2000, "diboson": 500},
            "test_pool": {"htautau": 3000, "ztautau": 20000, "ttbar": 2000, "diboson": 500},
            "luminosity_fb": 0.01,
        },
        "pseudo_experiments": {"trials": 30, "per_trial": 5, "mu_range": [0.5, 3.0],
                               "randomise": []},
        "interval": {"name": "cut-and-count"},
        "output": {"directory": str(tmp_path), "plots": False, "workspace": False,
                   "progress": False},
    }
    raw.update(overrides)
    return parse_spec(raw)


def test_counting_all_events_covers_in_a_workbench_run(tmp_path):
    result = run(_spec(tmp_path), _registry())
    s = result.summary
    assert s["n_failed"] == 0 and s["n_pseudo_experiments"] == 150
    assert abs(s["coverage"] - 0.6827) < 3 * np.sqrt(0.6827 * 0.3173 / 150)
    # no classifier: every event is counted
    assert all(r["info"]["n"] == r["n_events"] for r in result.records)
    # the holdout's background estimate matches the background the PEs actually contain
    # (independent samples: Poisson error of the mean plus ~0.7% MC statistics of each)
    b = result.records[0]["info"]["b"]
    n_bkg = np.array([r["n_events"] - r["n_signal"] for r in result.records])
    tolerance = 3 * np.sqrt(b / len(n_bkg) + 2 * (b / np.sqrt(20000)) ** 2)
    assert abs(n_bkg.mean() - b) < tolerance


def test_classifier_cut_narrows_the_interval(tmp_path):
    """With a classifier, the chosen cut must beat counting everything."""
    registry = _registry()
    common = {"pseudo_experiments": {"trials": 4, "per_trial": 5, "mu_range": [0.5, 3.0],
                                     "randomise": ["ttbar_scale", "diboson_scale"]}}
    counted = run(_spec(tmp_path / "all", **common), registry)
    cut = run(_spec(tmp_path / "cut", classifier={"name": "xgboost", "params": {
        "n_estimators": 30, "max_depth": 4}}, **common), registry)
    assert cut.summary["n_failed"] == 0
    info = cut.records[0]["info"]
    assert info["b"] < 0.5 * counted.records[0]["info"]["b"]
    assert cut.summary["width"] < counted.summary["width"]


# -- the workbench's test kit ------------------------------------------------------
def test_conforms_to_the_interval_protocol(workbench_training_data, workbench_classifier):
    """The workbench's conformance suite: fit once, a valid, deterministic, JSON-safe
    IntervalResult per pseudo-experiment (fixtures from ``workbench.testing``)."""
    from workbench_example_plugin import CutAndCount

    from workbench.testing import check_interval_strategy

    results = check_interval_strategy(CutAndCount(), workbench_training_data,
                                      workbench_classifier)
    # at 2% of the challenge luminosity the interval is wide but must contain mu_hat
    assert all(r.mu16 <= r.mu_hat <= r.mu84 for r in results)


def test_registered_parameters_are_validated():
    registry = _registry()
    with pytest.raises(Exception, match=r"bkg_uncertainty=-0.1 must be >= 0"):
        registry.create("interval", "cut-and-count", {"bkg_uncertainty": -0.1})
    with pytest.raises(Exception, match=r"threshold \(float \| none\)"):
        registry.create("interval", "cut-and-count", {"treshold": 0.5})
