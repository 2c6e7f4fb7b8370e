"""Sideband / control-region background model: closed forms, toy coverage, and the
generator's known answers (pure background -> mu ~ 0, injected signal recovered)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

from workbench.plugin.registry import get_registry
from workbench_builtins.intervals.sideband import (
    SidebandGenerator,
    SidebandModel,
    profiled_background,
)


def test_profiled_background_is_the_mle():
    rng = np.random.default_rng(1)
    for _ in range(20):
        na, nb = rng.poisson(40), rng.poisson(300)
        aa, ab, t = rng.uniform(0, 20), rng.uniform(0, 5), rng.uniform(0.02, 2.0)

        def f(b):
            return (aa + b * t) - na * np.log(aa + b * t) + (ab + b) - nb * np.log(ab + b)

        ref = minimize_scalar(f, bounds=(1e-9, 1e5), method="bounded", options={"xatol": 1e-9}).x
        assert profiled_background(na, nb, aa, ab, t) == pytest.approx(ref, rel=1e-6, abs=1e-6)
    # no signal: b = (n_a + n_b) / (1 + t) exactly
    assert profiled_background(30, 70, 0, 0, 0.25) == pytest.approx(100 / 1.25)


def _toy_model(mc_stat=False, degree=1):
    m = SidebandModel(mc_stat=mc_stat, correction_degree=degree)
    c = 0.5 * (m.edges[1:] + m.edges[:-1])
    s_a = 150 * np.exp(-0.5 * ((c - 85) / 15) ** 2)
    b_b = 20000 * np.exp(-c / 60)
    tf = 0.05 + 0.001 * (c - 30)
    var = (b_b * tf * 1e-4, b_b * 1e-4)
    m.set_simulation((s_a, 0.4 * s_a), (b_b * tf, b_b), var)
    return m, s_a, 0.4 * s_a, b_b * tf, b_b


def test_profile_interval_matches_full_minimisation():
    """q(mu) = 1 at the interval ends, checked by an independent scipy fit over all b_i."""
    m, s_a, s_b, b_a, b_b = _toy_model()
    rng = np.random.default_rng(2)
    n_a, n_b = rng.poisson(1.5 * s_a + b_a), rng.poisson(1.5 * s_b + b_b)
    r = m.fit(n_a, n_b)
    tf = m.tf_sim

    def full_nll(x, mu):
        c0, c1, b = x[0], x[1], np.exp(x[2:])
        t = tf * np.exp(c0 * m.basis[:, 0] + c1 * m.basis[:, 1])
        nu_a, nu_b = mu * s_a + b * t, mu * s_b + b
        return np.sum(nu_a - n_a * np.log(nu_a) + nu_b - n_b * np.log(nu_b))

    def prof(mu):
        x0 = np.r_[0.0, 0.0, np.log(np.maximum(n_b, 1))]
        return minimize(full_nll, x0, args=(mu,), method="L-BFGS-B", options={"maxiter": 5000,
                        "ftol": 1e-14, "gtol": 1e-9}).fun

    nll_hat = prof(r["mu_hat"])
    for end in (r["mu16"], r["mu84"]):
        assert 2 * (prof(end) - nll_hat) == pytest.approx(1.0, abs=0.03)


def test_toy_coverage_and_bias():
    m, s_a, s_b, b_a, b_b = _toy_model(mc_stat=True)
    rng = np.random.default_rng(3)
    mu, n_toys, covered, hats = 2.0, 80, 0, []
    for _ in range(n_toys):
        r = m.fit(rng.poisson(mu * s_a + b_a), rng.poisson(mu * s_b + b_b))
        covered += r["mu16"] <= mu <= r["mu84"]
        hats.append(r["mu_hat"])
    sigma68 = np.sqrt(0.6827 * 0.3173 / n_toys)
    assert abs(covered / n_toys - 0.6827) < 3.5 * sigma68
    assert abs(np.mean(hats) - mu) < 3 * np.std(hats) / np.sqrt(n_toys)


COUNTS = {"htautau": 20000, "ztautau": 300000, "ttbar": 40000, "diboson": 8000}


@pytest.fixture(scope="module")
def generated():
    out = {}
    for mu in (0.0, 40.0):
        gen = SidebandGenerator(data_mu=mu, luminosity_scale=0.1, mu_bounds=(-60, 120))
        out[mu] = (gen, gen.generate(COUNTS, 2))
    return out


def test_generator_pure_background_gives_mu_zero(generated):
    gen, _ = generated[0.0]
    fit = gen.last_fit
    assert fit["fit_valid"]
    assert fit["mu16"] <= 0.0 <= fit["mu84"]


def test_generator_recovers_injected_signal(generated):
    fit0, fit = generated[0.0][0].last_fit, generated[40.0][0].last_fit
    assert fit["mu16"] <= 40.0 <= fit["mu84"]
    # the injection is seen: the two intervals do not overlap
    assert fit["mu16"] > fit0["mu84"]


def test_generator_background_prediction_matches_truth(generated):
    """The predicted background in the signal region agrees with the simulated truth
    (true background in A inside the window of the pure-background pseudo-data)."""
    gen, events = generated[0.0]
    fit = gen.last_fit
    model = SidebandModel(edges=gen.options["edges"], window=gen.options["window"])
    centres = 0.5 * (model.edges[1:] + model.edges[:-1])
    sr = (centres >= model.window[0]) & (centres <= model.window[1])
    # mu = 0 pseudo-data hold no signal: label-1 events are the simulated signal part
    assert events[events.labels == 1].sum_weights() > 0
    predicted = events[events.labels == 0].sum_weights()
    observed_a = np.asarray(fit["n_a"])[sr].sum()
    assert predicted == pytest.approx(np.asarray(fit["background_a"])[sr].sum(), rel=1e-9)
    # mu = 0 data: region A holds background only; agreement within ~3 Poisson sigma
    assert abs(predicted - observed_a) < 3 * np.sqrt(observed_a) + 0.02 * observed_a
    assert set(np.unique(events.process)) <= {0, 1, 2, 3}


def test_registered_and_validates_parameters():
    reg = get_registry()
    assert "sideband" in reg.names("generator") and "sideband" in reg.names("interval")
    with pytest.raises(ValueError, match="control"):
        SidebandGenerator(control="score")
    with pytest.raises(ValueError, match="edges"):
        SidebandModel(edges=[1.0, 0.5, 2.0])
