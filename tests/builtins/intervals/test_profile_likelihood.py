"""Profile-likelihood intervals against closed forms, pyhf's own logpdf and toy coverage."""

from __future__ import annotations

import numpy as np
import pyhf
import pytest
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import chi2

from workbench.data.events import Events
from workbench.plugin.protocols import IntervalResult
from workbench.plugin.registry import PluginError, get_registry
from workbench.toolkit.profile import CompiledModel
from workbench_builtins.intervals.profile_likelihood import ProfileLikelihood

THRESHOLD = chi2.ppf(0.6827, 1)


def workspace(samples: list[dict], observed: list[float], mu_bounds=(0.0, 10.0)) -> dict:
    return {
        "channels": [{"name": "sr", "samples": samples}],
        "observations": [{"name": "sr", "data": list(observed)}],
        "measurements": [{"name": "m", "config": {
            "poi": "mu", "parameters": [{"name": "mu", "bounds": [list(mu_bounds)]}]}}],
        "version": "1.0.0",
    }


def counting(s: float, b: float, extra_bkg_modifiers=()) -> dict:
    return workspace([
        {"name": "signal", "data": [s],
         "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "background", "data": [b], "modifiers": list(extra_bkg_modifiers)},
    ], [b + s])


def poisson_interval(n: float, s: float, b: float, mu_lo: float = 0.0) -> tuple[float, float]:
    """Closed form: q(mu) = 2[(s mu + b) - (s mu_hat + b) - n ln((s mu + b)/(s mu_hat + b))]."""
    mu_hat = max((n - b) / s, mu_lo)

    def q(mu):
        lam, lam_hat = s * mu + b, s * mu_hat + b
        return 2.0 * ((lam - lam_hat) - n * np.log(lam / lam_hat))

    upper = brentq(lambda m: q(m) - THRESHOLD, mu_hat, mu_hat + 50.0, xtol=1e-12)
    lower = mu_lo if q(mu_lo) < THRESHOLD else brentq(
        lambda m: q(m) - THRESHOLD, mu_lo, mu_hat, xtol=1e-12)
    return lower, upper


@pytest.mark.parametrize("engine", ["fast", "pyhf"])
@pytest.mark.parametrize("n", [70.0, 55.0, 120.0])
def test_counting_experiment_matches_closed_form(engine, n):
    s, b = 10.0, 50.0
    pl = ProfileLikelihood(engine=engine).setup(None, counting(s, b))
    result = pl.fit_counts(np.array([n]))
    lower, upper = poisson_interval(n, s, b)
    assert result.mu_hat == pytest.approx((n - b) / s, abs=1e-3)
    assert result.mu16 == pytest.approx(lower, abs=1e-3)
    assert result.mu84 == pytest.approx(upper, abs=1e-3)
    assert result.info["engine"] == engine
    assert result.info["mu16_at_bound"] == (lower == 0.0)  # n=55: q(0) < 1
    assert not result.info["mu84_at_bound"]


def test_lower_end_clamped_at_zero_when_q0_below_threshold():
    s, b, n = 10.0, 50.0, 45.0  # deficit: mu_hat at the bound 0
    result = ProfileLikelihood().setup(None, counting(s, b)).fit_counts(np.array([n]))
    lower, upper = poisson_interval(n, s, b)
    assert result.mu_hat == pytest.approx(0.0, abs=1e-6)
    assert result.mu16 == 0.0 and lower == 0.0
    assert result.info["mu16_at_bound"]
    assert result.mu84 == pytest.approx(upper, abs=1e-3)


def test_constrained_normsys_widens_interval_as_expected():
    """Gaussian-constrained 10% background normalisation: width ~ sqrt(stat^2 + syst^2)."""
    s, b, n = 100.0, 1000.0, 1100.0
    plain = ProfileLikelihood().setup(None, counting(s, b)).fit_counts(np.array([n]))
    norm = {"name": "bnorm", "type": "normsys", "data": {"hi": 1.1, "lo": 1 / 1.1}}
    prof = ProfileLikelihood().setup(None, counting(s, b, [norm])).fit_counts(np.array([n]))
    stat = np.sqrt(n) / s
    expected = np.sqrt(stat**2 + (np.log(1.1) * b / s) ** 2)  # b * 1.1**alpha, alpha ~ N(0,1)
    width_plain = 0.5 * (plain.mu84 - plain.mu16)
    width_prof = 0.5 * (prof.mu84 - prof.mu16)
    assert width_plain == pytest.approx(stat, rel=0.02)
    assert width_prof == pytest.approx(expected, rel=0.04)
    assert width_prof > 2.5 * width_plain
    # Independent check: profile the same likelihood by hand -- q at both reported ends
    # is the threshold.  With lo = 1/hi, pyhf's code4 is b * 1.1**alpha up to ~1e-7.
    def q_by_hand(mu):
        def nll(alpha):
            lam = s * mu + b * 1.1**alpha
            return lam - n * np.log(lam) + 0.5 * alpha**2
        return minimize_scalar(nll, bounds=(-5, 5), method="bounded").fun
    q_up = 2 * (q_by_hand(prof.mu84) - q_by_hand(prof.mu_hat))
    assert q_up == pytest.approx(THRESHOLD, abs=0.02)


def random_model(rng, nbins=4):
    """A model with every supported modifier type, two staterror'd samples."""
    sig = rng.uniform(5, 20, nbins)
    bkg = rng.uniform(50, 200, nbins)
    other = rng.uniform(5, 30, nbins)
    samples = [
        {"name": "signal", "data": sig.tolist(), "modifiers": [
            {"name": "mu", "type": "normfactor", "data": None},
            {"name": "shape", "type": "histosys",
             "data": {"hi_data": (sig * 1.1).tolist(), "lo_data": (sig * 0.95).tolist()}},
            {"name": "staterror_sr", "type": "staterror", "data": (0.1 * sig).tolist()},
        ]},
        {"name": "bkg", "data": bkg.tolist(), "modifiers": [
            {"name": "shape", "type": "histosys",
             "data": {"hi_data": (bkg * rng.uniform(0.9, 1.1, nbins)).tolist(),
                      "lo_data": (bkg * rng.uniform(0.9, 1.1, nbins)).tolist()}},
            {"name": "norm_a", "type": "normsys", "data": {"hi": 1.2, "lo": 0.85}},
            {"name": "norm_b", "type": "normsys", "data": {"hi": 1.05, "lo": 0.97}},
            {"name": "staterror_sr", "type": "staterror", "data": (0.03 * bkg).tolist()},
        ]},
        {"name": "other", "data": other.tolist(), "modifiers": [
            {"name": "norm_a", "type": "normsys", "data": {"hi": 1.3, "lo": 0.6}},
        ]},
    ]
    return workspace(samples, (sig + bkg + other).tolist())


@pytest.mark.parametrize("codes", ["workspace-default", "code1/code0"])
def test_compiled_likelihood_equals_pyhf_and_gradient_is_exact(codes):
    rng = np.random.default_rng(7)
    spec = random_model(rng)
    settings = None if codes == "workspace-default" else {
        "normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}}
    model = pyhf.Workspace(spec).model(**({"modifier_settings": settings} if settings else {}))
    compiled = CompiledModel(model, spec)
    aux = np.asarray(model.config.auxdata)
    init = np.asarray(model.config.suggested_init())
    for _ in range(20):
        p = init + rng.normal(0, 1.2, size=init.shape)  # reaches |alpha| > 1 too
        p[model.config.poi_index] = abs(p[model.config.poi_index])
        gam = model.config.par_slice("staterror_sr")
        p[gam] = 1 + 0.05 * rng.standard_normal(gam.stop - gam.start)
        n = rng.poisson(compiled.expected(init)).astype(float)
        ref = -model.logpdf(p, np.concatenate([n, aux]))[0]
        from scipy.special import gammaln

        assert compiled.nll(p, n, float(gammaln(n + 1).sum())) == pytest.approx(ref, rel=1e-10)
        grad = compiled.nll_grad(p, n)
        eps = 1e-6
        numeric = np.array([
            (compiled.nll(p + eps * e, n, 0.0) - compiled.nll(p - eps * e, n, 0.0)) / (2 * eps)
            for e in np.eye(len(p))
        ])
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(compiled.expected(init),
                               model.expected_actualdata(init), rtol=1e-12)


def test_fast_and_pyhf_engines_agree_on_a_full_model():
    rng = np.random.default_rng(3)
    spec = random_model(rng)
    n = np.array(spec["observations"][0]["data"]) * rng.uniform(0.9, 1.2, 4)
    n = np.round(n)
    fast = ProfileLikelihood(engine="fast").setup(None, spec).fit_counts(n)
    slow = ProfileLikelihood(engine="pyhf").setup(None, spec).fit_counts(n)
    assert fast.mu_hat == pytest.approx(slow.mu_hat, abs=2e-3)
    assert fast.mu16 == pytest.approx(slow.mu16, abs=2e-3)
    assert fast.mu84 == pytest.approx(slow.mu84, abs=2e-3)
    assert set(fast.nuisances) == {"shape", "norm_a", "norm_b"}
    for name in fast.nuisances:
        assert fast.nuisances[name] == pytest.approx(slow.nuisances[name], abs=5e-3)
        assert fast.nuisance_errors[name] > 0


def test_coverage_on_poisson_toys():
    """200 Poisson toys of a 3-bin model with a constrained background normsys."""
    rng = np.random.default_rng(2024)
    sig, bkg = np.array([5.0, 15.0, 30.0]), np.array([200.0, 80.0, 20.0])
    spec = workspace([
        {"name": "signal", "data": sig.tolist(),
         "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "bkg", "data": bkg.tolist(),
         "modifiers": [{"name": "bnorm", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}]},
    ], (sig + bkg).tolist())
    pl = ProfileLikelihood().setup(None, spec)
    mu_true, n_toys = 1.3, 200
    covered = 0
    for _ in range(n_toys):
        alpha = rng.standard_normal()  # the NP drawn from its constraint, as a PE's NPs are
        lam = mu_true * sig + bkg * 1.05**alpha
        r = pl.fit_counts(rng.poisson(lam).astype(float))
        covered += r.mu16 <= mu_true <= r.mu84
    coverage = covered / n_toys
    sigma = np.sqrt(0.6827 * (1 - 0.6827) / n_toys)
    assert abs(coverage - 0.6827) < 3.5 * sigma, coverage


def test_unsupported_modifier_falls_back_to_pyhf_logpdf():
    spec = counting(10.0, 50.0, [{"name": "shapesys_b", "type": "shapesys", "data": [5.0]}])
    with pytest.warns(UserWarning, match="shapesys"):
        pl = ProfileLikelihood().setup(None, spec)
    assert pl.engine_used == "pyhf"
    r = pl.fit_counts(np.array([70.0]))
    assert r.mu16 < r.mu_hat < r.mu84
    with pytest.raises(Exception, match="shapesys"):
        ProfileLikelihood(engine="fast").setup(None, spec)


class _FixedTemplates:
    """A Templates stand-in: every event in one bin of a 1-bin counting model."""

    poi = "mu"

    def observations(self, events):
        return {"sr": [float(len(events))]}

    def workspace(self, observations=None):
        return counting(10.0, 50.0)


def test_predict_runs_observations_fit_and_interval():
    pl = ProfileLikelihood()
    pl.fit(None, None, _FixedTemplates())
    events = Events.from_columns(
        {name: np.zeros(70) for name in __import__("workbench").FEATURES})
    result = pl.predict(events)
    assert isinstance(result, IntervalResult)
    lower, upper = poisson_interval(70.0, 10.0, 50.0)
    assert (result.mu16, result.mu84) == pytest.approx((lower, upper), abs=1e-3)
    assert {"observations", "fit", "interval", "total"} <= set(result.info["timings"])


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="template strategy"):
        ProfileLikelihood().fit(None, None, None)
    with pytest.raises(ValueError, match="engine"):
        ProfileLikelihood(engine="magic")
    pl = ProfileLikelihood().setup(None, counting(10.0, 50.0))
    with pytest.raises(ValueError, match="bins"):
        pl.fit_counts(np.array([1.0, 2.0]))


def test_registered_through_entry_points():
    registry = get_registry(refresh=True)
    strategy = registry.get("interval", "profile-likelihood")
    assert strategy.factory is ProfileLikelihood
    assert isinstance(registry.create("interval", "profile-likelihood", {"xtol": 1e-5}),
                      ProfileLikelihood)
    with pytest.raises(PluginError, match="unknown parameter"):
        registry.create("interval", "profile-likelihood", {"bogus": 1})
