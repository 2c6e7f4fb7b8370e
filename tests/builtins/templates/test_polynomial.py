"""The "polynomial" template strategy: per-bin NP response polynomials, its own
likelihood (used by the profile-likelihood interval) and a comparison with pyhf's
code4/code4p interpolation against directly shifted holdouts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from toys import MetScore, synthetic_events, training_data

from workbench import BinnedLikelihood, LikelihoodTemplates, ReparametrisedTemplates
from workbench.data.schema import PROCESSES
from workbench.plugin.registry import get_registry
from workbench.systematics.engine import apply_systematics
from workbench.systematics.nuisance import NuisanceParameters
from workbench_builtins.intervals.profile_likelihood import ProfileLikelihood
from workbench_builtins.templates.polynomial import (
    PolynomialLikelihood,
    PolynomialTemplates,
    compare_interpolation,
)


@pytest.fixture(scope="module")
def holdout():
    return synthetic_events(3000, seed=7)


@pytest.fixture(scope="module")
def data(holdout):
    return training_data(holdout)


@pytest.fixture(scope="module")
def built(data):
    return PolynomialTemplates(bins=8, categories="njets").build(data, MetScore())


def _direct(templates, data, **shift):
    """Per-bin totals of the holdout shifted by ``shift`` (numpy, independent of the plugin)."""
    nps = NuisanceParameters(soft_met=1.0).replace(**shift)
    ev = apply_systematics(data.holdout, nps, int(data.seed) % (2**31 - 1))
    s = MetScore().predict(ev)
    nj = ev["PRI_n_jets"]
    out = []
    for sel, ch in zip((nj == 0, nj == 1, nj >= 2), templates.channels.values()):
        h, _ = np.histogram(np.clip(s[sel], 0, 1 - 1e-12), ch.edges, weights=ev.weights[sel])
        out.append(h)
    return np.concatenate(out)


def test_registered_and_parameters_checked():
    reg = get_registry(refresh=True)
    t = reg.create("template", "polynomial", {"bins": 5, "degree": 2, "categories": "mt"})
    assert isinstance(t, PolynomialTemplates) and t.degree == 2 and t.category_names == ["lowmt", "highmt"]
    with pytest.raises(Exception, match="unknown parameter"):
        reg.create("template", "polynomial", {"degre": 2})


def test_abilities_of_the_built_templates(built):
    assert isinstance(built, LikelihoodTemplates) and isinstance(built, ReparametrisedTemplates)
    assert isinstance(built.likelihood(), BinnedLikelihood)


def test_full_degree_polynomials_interpolate_the_grid(data):
    grid = {"tes": [-2, -1, 0, 1, 2], "jes": [-1, 0, 1], "soft_met": [-1, 0, 1]}
    t = PolynomialTemplates(bins=8, categories="njets", grid=grid, degree=4).build(data, MetScore())
    lik = t.likelihood()
    i = lik.par_names.index("tes")
    for alpha, tes in ((2.0, 1.02), (-2.0, 0.98), (1.0, 1.01)):
        p = lik.init.copy()
        p[i] = alpha
        np.testing.assert_allclose(lik.expected(p), _direct(t, data, tes=tes), rtol=1e-8)
    assert lik.bounds[i] == (-2.0, 2.0)  # no extrapolation beyond the grid


def test_nominal_and_exact_scale_factors(built):
    lik = built.likelihood()
    T = np.concatenate([[ch.sample_data[p] for p in PROCESSES] for ch in built.channels.values()],
                       axis=1)
    np.testing.assert_allclose(lik.expected(lik.init), T.sum(axis=0), rtol=1e-12)
    p = lik.init.copy()
    p[lik.par_names.index("ttbar_scale")] = 2.0  # ttbar_scale = 1.04, exactly linear
    p[lik.par_names.index("bkg_scale")] = -1.0  # 0.999 on every background
    p[0] = 1.7
    scale = np.array([1.7, 0.999, 1.04 * 0.999, 0.999])
    np.testing.assert_allclose(lik.expected(p), scale @ T, rtol=1e-12)
    assert built.to_physical("ttbar_scale", 2.0) == pytest.approx(1.04)
    assert built.to_physical("soft_met", np.log(3.0)) == pytest.approx(3.0)


def test_gradient_and_profiled_staterror():
    rng = np.random.default_rng(3)
    S, B = 4, 6
    lik = PolynomialLikelihood(
        channels=["c"], nominal=rng.uniform(5, 50, (S, B)),
        coef={"tes": rng.normal(0, 0.05, (S, B, 3)), "soft_met": rng.normal(0, 0.05, (S, B, 2))},
        alpha_range={"tes": (-3, 3), "soft_met": (-3, 1.6)},
        scales={"ttbar_scale": (np.array([0, 0, 1, 0], bool), 0.02, (-10, 10)),
                "bkg_scale": (np.array([0, 1, 1, 1], bool), 0.001, (-10, 10))},
        rel_stat=rng.uniform(0.02, 0.2, B), mu_bounds=(0, 10), signal_index=0)
    n = rng.poisson(lik.expected(lik.init)).astype(float)
    for _ in range(3):
        p = np.array([1.3, *rng.normal(0, 0.7, 4)])
        g = lik.nll_grad(p, n)
        h = 1e-6
        fd = [(lik.nll(p + h * e, n) - lik.nll(p - h * e, n)) / (2 * h) for e in np.eye(len(p))]
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)
    # the closed-form gamma is the minimum of the per-bin Poisson x Gaussian term
    nu = lik.expected(lik.init)
    gam = lik._gamma(nu, n)
    for b in range(B):
        def f(x, b=b):
            return nu[b] * x - n[b] * np.log(nu[b] * x) + (x - 1) ** 2 / (2 * lik.s2[b])
        ref = minimize_scalar(f, bounds=(1e-6, 5), method="bounded",
                              options={"xatol": 1e-10}).x
        assert gam[b] == pytest.approx(ref, abs=1e-6)


def test_profile_likelihood_uses_the_polynomial_likelihood(built, data, holdout):
    pl = ProfileLikelihood()
    pl.fit(data, MetScore(), built)
    assert pl.engine_used == "likelihood:polynomial"
    res = pl.fit_counts(np.asarray(built.likelihood().expected(pl.init)))
    assert res.mu_hat == pytest.approx(1.0, abs=2e-3)  # Asimov
    assert res.mu16 < 1.0 < res.mu84
    pe = holdout[:5000].without_truth()
    r = pl.predict(pe)
    assert np.isfinite([r.mu_hat, r.mu16, r.mu84]).all()
    assert set(r.nuisances) == {"tes", "jes", "soft_met", "ttbar_scale", "diboson_scale",
                                "bkg_scale"}
    assert set(r.info["nuisances_physical"]) == set(r.nuisances)


def test_polynomials_beat_piecewise_interpolation_away_from_the_nodes(built, data):
    """At tes = 0.97 / 1.03 and soft_met = 3 (not a node of either method), the
    polynomial prediction is closer to the directly shifted holdout than pyhf's
    code4p interpolation/extrapolation of the +-1 sigma templates."""
    points = [("tes", 0.97), ("tes", 1.03), ("tes", 0.975), ("soft_met", 3.0), ("soft_met", 0.15)]
    rows = compare_interpolation(built, data, points)
    for r in rows:
        print(r)
    by = {(r["np"], r["value"]): r for r in rows}
    direct = _direct(built, data, tes=0.97)  # independent check of the comparison's truth
    lik = built.likelihood()
    p = lik.init.copy()
    p[lik.par_names.index("tes")] = -3.0
    ok = direct > 0
    mare = np.mean(np.abs(lik.expected(p)[ok] - direct[ok]) / direct[ok])
    assert by[("tes", 0.97)]["mare_polynomial"] == pytest.approx(mare, rel=1e-6)
    for key in (("tes", 0.97), ("tes", 1.03), ("tes", 0.975)):
        assert by[key]["mare_polynomial"] < by[key]["mare_pyhf"], key
    assert by[("soft_met", 3.0)]["mare_polynomial"] < 0.05
