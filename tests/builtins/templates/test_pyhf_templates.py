"""pyhf template strategy: binning, systematic variations, workspace validity."""

from __future__ import annotations

import numpy as np
import pyhf
import pytest
from toys import HadPtScore, synthetic_events, training_data

from workbench import (
    DescribedTemplates,
    LikelihoodTemplates,
    ReparametrisedTemplates,
    ScoreTemplates,
)
from workbench.data.schema import PROCESSES
from workbench.plugin.protocols import TrainingData
from workbench.plugin.registry import PluginError, get_registry
from workbench.systematics.engine import apply_systematics
from workbench.systematics.nuisance import NuisanceParameters
from workbench.toolkit.binning import weighted_quantile_edges
from workbench.toolkit.nominal import nominal_nuisances
from workbench.toolkit.templates import BinnedTemplates
from workbench_builtins.templates.pyhf_templates import PyhfTemplates


@pytest.fixture(scope="module")
def holdout():
    return synthetic_events(4000, seed=5)


@pytest.fixture(scope="module")
def built(holdout) -> tuple[BinnedTemplates, TrainingData]:
    data = training_data(holdout)
    return PyhfTemplates(bins=12).build(data, HadPtScore()), data


def test_workspace_validates_and_round_trips_through_pyhf(built):
    templates, _ = built
    spec = templates.workspace(None)
    ws = pyhf.Workspace(spec)  # validates against pyhf's schema
    model = ws.model()
    assert model.config.poi_name == "mu"
    assert model.config.channel_nbins == {templates.channel: templates.nbins}
    assert set(model.config.samples) == set(PROCESSES)
    assert {"tes", "jes", "soft_met", "ttbar_scale", "diboson_scale", "bkg_scale"} <= set(
        model.config.par_order)
    init = model.config.suggested_init()
    # Asimov data = the model's expectation at mu = 1, nominal NPs.
    np.testing.assert_allclose(ws.data(model, include_auxdata=False),
                               model.expected_actualdata(init), rtol=1e-10)
    lo, hi = model.config.suggested_bounds()[model.config.poi_index]
    assert lo <= 0.1 and hi >= 3.0
    # The soft_met parameter is bounded by the NP's clip: alpha = ln(soft_met) <= ln 5.
    sm = model.config.par_slice("soft_met").start
    assert model.config.suggested_bounds()[sm][1] == pytest.approx(np.log(5.0))


def test_nominal_templates_are_the_thresholded_nominal_holdout(built, holdout):
    templates, data = built
    nominal = apply_systematics(holdout, NuisanceParameters(soft_met=1.0), int(data.seed))
    assert nominal_nuisances(data) == NuisanceParameters(soft_met=1.0)
    assert len(nominal) < len(holdout)  # the 26 GeV thresholds did act
    scores = HadPtScore().predict(nominal)
    for code, proc in enumerate(PROCESSES):
        sel = nominal.process == code
        expected, _ = np.histogram(np.clip(scores[sel], 0, 1 - 1e-12), templates.edges,
                                   weights=nominal.weights[sel])
        np.testing.assert_allclose(templates.sample_data[proc], np.maximum(expected, 1e-6),
                                   rtol=1e-9)
        w2, _ = np.histogram(np.clip(scores[sel], 0, 1 - 1e-12), templates.edges,
                             weights=nominal.weights[sel] ** 2)
        np.testing.assert_allclose(templates.staterror[proc], np.sqrt(w2), rtol=1e-9)


def test_equal_signal_binning_puts_equal_signal_in_each_bin(built):
    templates, _ = built
    sig = templates.sample_data["htautau"]
    assert templates.nbins == 12
    np.testing.assert_allclose(sig / sig.sum(), 1.0 / 12, atol=0.01)
    assert templates.edges[0] == 0.0 and templates.edges[-1] == 1.0


def test_weighted_quantile_edges_property():
    rng = np.random.default_rng(1)
    s, w = rng.uniform(0, 1, 20000), rng.uniform(0.5, 1.5, 20000)
    edges = weighted_quantile_edges(s, w, 5, 0.0, 1.0)
    content, _ = np.histogram(s, edges, weights=w)
    np.testing.assert_allclose(content / w.sum(), 0.2, atol=0.005)


def test_histosys_moves_bins_in_the_physical_direction(built):
    """tes up -> higher tau pT -> higher scores: the mean bin index rises (and falls for down)."""
    templates, _ = built
    centres = np.arange(templates.nbins)
    for proc in PROCESSES:
        nom = templates.sample_data[proc]
        down, up = templates.histosys["tes"][proc]

        def mean_bin(h):
            return np.sum(centres * h) / np.sum(h)

        assert mean_bin(up) > mean_bin(nom) > mean_bin(down), proc
    assert templates.shape_points["tes"] == pytest.approx((0.99, 1.0, 1.01))
    assert templates.shape_points["soft_met"] == pytest.approx((np.exp(-1), 1.0, np.exp(1)))
    # soft_met smearing changes only MET-derived inputs, not the tau pT: zero shift here,
    # and the common seed makes the tes variation free of smearing noise.
    sm_down, sm_up = templates.histosys["soft_met"]["ztautau"]
    np.testing.assert_allclose(sm_up, templates.sample_data["ztautau"], rtol=1e-9)


def test_normsys_factors_come_from_the_priors(built):
    templates, _ = built
    assert templates.normsys["ttbar_scale"] == {"ttbar": pytest.approx((1.02, 0.98))}
    assert templates.normsys["diboson_scale"] == {"diboson": pytest.approx((1.25, 0.75))}
    assert set(templates.normsys["bkg_scale"]) == {"ztautau", "ttbar", "diboson"}
    assert templates.normsys["bkg_scale"]["ztautau"] == pytest.approx((1.001, 0.999))
    assert templates.to_physical("ttbar_scale", 1.0) == pytest.approx(1.02)
    assert templates.to_physical("soft_met", 1.0) == pytest.approx(np.e)
    assert templates.to_physical("tes", -1.0) == pytest.approx(0.99)


def test_only_randomised_nps_get_modifiers_and_fixed_ones_stay_nominal(holdout):
    data = training_data(holdout, randomised=("tes",))
    templates = PyhfTemplates(bins=6, binning="uniform", staterror=False).build(
        data, HadPtScore())
    spec = templates.workspace(None)
    names = {m["name"] for s in spec["channels"][0]["samples"] for m in s["modifiers"]}
    assert names == {"mu", "tes"}
    model = pyhf.Workspace(spec).model()
    assert set(model.config.par_order) == {"mu", "tes"}
    np.testing.assert_allclose(templates.edges, np.linspace(0, 1, 7))
    # soft_met is not randomised: PEs have no smearing, nor do the templates.
    assert nominal_nuisances(data).soft_met == 0.0


def test_empty_bins_are_floored_positive(holdout):
    data = training_data(holdout, randomised=())
    # A score range far wider than the scores: the outer uniform bins stay empty.
    templates = PyhfTemplates(bins=10, binning="uniform", score_range=(-5.0, 5.0)).build(
        data, HadPtScore())
    for proc in PROCESSES:
        assert (templates.sample_data[proc] > 0).all()
        assert (templates.sample_data[proc][:4] == 1e-6).all()
    pyhf.Workspace(templates.workspace(None)).model()


def test_observations_fill_the_same_binning(built, holdout):
    templates, _ = built
    pe = holdout[:3000].without_truth()
    obs = templates.observations(pe)
    counts = np.asarray(obs[templates.channel])
    expected, _ = np.histogram(np.clip(HadPtScore().predict(pe), 0, 1 - 1e-12), templates.edges)
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == len(pe)
    spec = templates.workspace(obs)
    assert pyhf.Workspace(spec).data(pyhf.Workspace(spec).model(),
                                     include_auxdata=False) == pytest.approx(counts.tolist())
    with pytest.raises(ValueError, match="bins"):
        templates.workspace({templates.channel: [1.0, 2.0]})
    with pytest.raises(KeyError, match="channel"):
        templates.workspace({"elsewhere": counts.tolist()})


def test_parameter_errors_name_the_parameter():
    with pytest.raises(ValueError, match="binning"):
        PyhfTemplates(binning="quantile")
    with pytest.raises(ValueError, match="shape_systematics"):
        PyhfTemplates(shape_systematics=("tes", "lumi"))
    with pytest.raises(ValueError, match="score_range"):
        PyhfTemplates(score_range=(1.0, 0.0))


def test_abilities_of_the_built_templates(built):
    templates, _ = built
    assert isinstance(templates, ScoreTemplates) and len(templates.channels) == 1
    assert isinstance(templates, ReparametrisedTemplates)
    assert isinstance(templates, DescribedTemplates)
    assert not isinstance(templates, LikelihoodTemplates)  # pyhf's workspace is the model


def test_registered_through_entry_points():
    registry = get_registry(refresh=True)
    assert registry.get("template", "pyhf").factory is PyhfTemplates
    assert registry.create("template", "pyhf", {"bins": 5}).bins == 5
    with pytest.raises(PluginError, match="unknown parameter"):
        registry.create("template", "pyhf", {"nbins": 5})


def test_end_to_end_with_profile_likelihood(built, holdout):
    """Templates -> pyhf model -> interval on a PE drawn from the same events."""
    from workbench.pseudo_experiments import sample_pseudo_experiment
    from workbench_builtins.intervals.profile_likelihood import ProfileLikelihood

    templates, data = built
    pl = ProfileLikelihood()
    pl.fit(data, HadPtScore(), templates)
    assert pl.engine_used == "fast"
    mu_true = 2.0
    nps = NuisanceParameters(tes=1.01, soft_met=1.0)
    pe = sample_pseudo_experiment(holdout, mu_true, nps, 17).without_truth()
    result = pl.predict(pe)
    assert result.mu16 <= result.mu_hat <= result.mu84
    assert set(result.nuisances) == {"tes", "jes", "soft_met", "ttbar_scale",
                                     "diboson_scale", "bkg_scale"}
    # A +1 sigma tes shift is seen by the fit (the score is the tau pT).
    assert result.info["nuisances_physical"]["tes"] == pytest.approx(1.01, abs=0.004)
    assert result.mu16 - 1.5 < mu_true < result.mu84 + 1.5


@pytest.mark.slow
def test_inference_time_on_a_million_events():
    """Median per-PE inference (xgboost scoring of ~1M events + fit + interval) <= 2 s."""
    import time

    from workbench.pseudo_experiments import sample_pseudo_experiment
    from workbench_builtins.classifiers.xgboost_classifier import XGBoostClassifier
    from workbench_builtins.intervals.profile_likelihood import ProfileLikelihood

    train, hold = synthetic_events(30000, seed=1), synthetic_events(30000, seed=2)
    data = training_data(hold)
    data.train = train
    clf = XGBoostClassifier()
    clf.fit(data)
    pl = ProfileLikelihood()
    pl.fit(data, clf, PyhfTemplates().build(data, clf))
    pool = synthetic_events(60000, seed=3)
    times = []
    for seed in range(3):
        pe = sample_pseudo_experiment(pool, 1.0, NuisanceParameters(soft_met=1.0), seed)
        t0 = time.perf_counter()
        pl.predict(pe.without_truth())
        times.append(time.perf_counter() - t0)
    print(f"per-PE inference on {len(pe)} events, {clf.info['n_trees']} trees: {times}")
    assert len(pe) > 800_000
    assert np.median(times) <= 2.0
