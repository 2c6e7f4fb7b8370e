"""pyhf templates in depth: categories, norm/shape split, symmetrisation, smoothing,
pruning and the guards (non-positive bins, normsys lo <= 0, empty channels, no NaN fits)."""

from __future__ import annotations

import warnings

import numpy as np
import pyhf
import pytest
from toys import HadPtScore, MetScore, synthetic_events, training_data

from workbench.data.schema import PROCESSES
from workbench.systematics.engine import apply_systematics
from workbench.systematics.nuisance import PRIORS, NuisanceParameters, Prior
from workbench.toolkit.binning import smooth_353h, smooth_polynomial
from workbench_builtins.intervals.profile_likelihood import ProfileLikelihood
from workbench_builtins.templates.pyhf_templates import PyhfTemplates


@pytest.fixture(scope="module")
def holdout():
    return synthetic_events(3000, seed=5)


@pytest.fixture(scope="module")
def data(holdout):
    return training_data(holdout)


@pytest.fixture(scope="module")
def nominal(holdout, data):
    return apply_systematics(holdout, NuisanceParameters(soft_met=1.0), int(data.seed))


def test_njets_categories_are_channels_with_their_own_binning(data, nominal, holdout):
    t = PyhfTemplates(bins={"0j": 4, "1j": 5, "2j": 6}, categories="njets").build(data, MetScore())
    assert list(t.channels) == ["score_0j", "score_1j", "score_2j"]
    assert [ch.nbins for ch in t.channels.values()] == [4, 5, 6]
    nj = nominal["PRI_n_jets"]
    scores = MetScore().predict(nominal)
    for (name, ch), sel in zip(t.channels.items(), (nj == 0, nj == 1, nj >= 2)):
        for code, proc in enumerate(PROCESSES):
            m = sel & (nominal.process == code)
            expected, _ = np.histogram(np.clip(scores[m], 0, 1 - 1e-12), ch.edges,
                                       weights=nominal.weights[m])
            np.testing.assert_allclose(ch.sample_data[proc], np.maximum(expected, 1e-6),
                                       rtol=1e-9, err_msg=f"{name} {proc}")
        sig = ch.sample_data["htautau"]  # equal-signal binning per channel
        np.testing.assert_allclose(sig / sig.sum(), 1.0 / ch.nbins, atol=0.03)
    # exclusive and exhaustive: every PE event lands in exactly one channel
    pe = holdout[:2000].without_truth()
    obs = t.observations(pe)
    assert sum(np.sum(v) for v in obs.values()) == len(pe)
    ws = pyhf.Workspace(t.workspace(obs))
    model = ws.model()
    assert model.config.channel_nbins == {"score_0j": 4, "score_1j": 5, "score_2j": 6}
    assert {f"staterror_score_{c}" for c in ("0j", "1j", "2j")} <= set(model.config.par_order)
    pl = ProfileLikelihood().setup(t, t.workspace(None))
    assert pl.engine_used == "fast"  # compiled multi-channel NLL == pyhf logpdf
    res = pl.predict(pe)
    assert np.isfinite([res.mu_hat, res.mu16, res.mu84]).all()


def test_cut_categories_and_their_errors(data, nominal):
    cats = [{"name": "low", "column": "DER_mass_transverse_met_lep", "high": 30.0},
            {"name": "high", "cuts": [{"column": "DER_mass_transverse_met_lep", "low": 30.0}]}]
    t = PyhfTemplates(bins=3, binning="uniform", categories=cats).build(data, MetScore())
    mt = nominal["DER_mass_transverse_met_lep"]
    total = {n: sum(ch.sample_data[p].sum() for p in PROCESSES) for n, ch in t.channels.items()}
    assert total["score_low"] == pytest.approx(nominal.weights[mt < 30].sum(), rel=1e-9)
    assert total["score_high"] == pytest.approx(nominal.weights[mt >= 30].sum(), rel=1e-9)
    overlapping = [{"name": "a", "column": "PRI_had_pt", "low": 0.0},
                   {"name": "b", "column": "PRI_had_pt", "low": 30.0}]
    with pytest.raises(ValueError, match="overlap"):
        PyhfTemplates(categories=overlapping, binning="uniform").build(data, MetScore())
    with pytest.raises(ValueError, match="presets"):
        PyhfTemplates(categories="nbjets")
    with pytest.raises(ValueError, match="unknown categories"):
        PyhfTemplates(categories="njets", bins={"3j": 4})


def test_empty_channel_raises_naming_it(data):
    cats = [{"name": "all", "column": "PRI_had_pt", "high": 1e6},
            {"name": "boosted", "column": "PRI_had_pt", "low": 1e6}]
    with pytest.raises(ValueError, match="'score_boosted'.*empty"):
        PyhfTemplates(categories=cats, binning="uniform").build(data, MetScore())


def test_norm_shape_split_is_one_parameter_reproducing_the_variation(data):
    plain = PyhfTemplates(bins=8).build(data, MetScore())
    split = PyhfTemplates(bins=8, norm_shape_split=True).build(data, MetScore())
    for proc in PROCESSES:
        nom = split.sample_data[proc]
        lo, hi = split.histosys["tes"][proc]
        assert hi.sum() == pytest.approx(nom.sum(), rel=1e-9)  # shape only
        assert lo.sum() == pytest.approx(nom.sum(), rel=1e-9)
        raw_up = split.first.raw["tes_up"][:, PROCESSES.index(proc)]
        assert split.normsys["tes"][proc][0] == pytest.approx(raw_up.sum() / nom.sum(), rel=1e-9)
    ws_split, ws_plain = split.workspace(None), plain.workspace(None)
    m_split, m_plain = pyhf.Workspace(ws_split).model(), pyhf.Workspace(ws_plain).model()
    assert m_split.config.par_order.count("tes") == 1  # normsys + histosys share "tes"
    assert m_split.config.npars == m_plain.config.npars
    # At alpha = +-1 both models hit the shifted template exactly (code4p / code4 nodes).
    for model, ws in ((m_split, ws_split), (m_plain, ws_plain)):
        for alpha, tag in ((1.0, "up"), (-1.0, "down")):
            pars = np.array(model.config.suggested_init())
            pars[model.config.par_slice("tes")] = alpha
            direct = split.first.raw[f"tes_{tag}"].sum(axis=1)
            np.testing.assert_allclose(model.expected_actualdata(pars), direct, rtol=1e-6)
    pl = ProfileLikelihood().setup(split, ws_split)
    assert pl.engine_used == "fast"  # compiled NLL handles the shared parameter


def test_symmetrisation(data):
    raw = PyhfTemplates(bins=8).build(data, MetScore())
    avg = PyhfTemplates(bins=8, symmetrise="average").build(data, MetScore())
    mir = PyhfTemplates(bins=8, symmetrise="mirror").build(data, MetScore())
    for proc in PROCESSES:
        nom = raw.sample_data[proc]
        lo, hi = raw.histosys["tes"][proc]
        a_lo, a_hi = avg.histosys["tes"][proc]
        np.testing.assert_allclose(a_hi - nom, nom - a_lo, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(a_hi - a_lo, hi - lo, rtol=1e-9, atol=1e-9)
        m_lo, m_hi = mir.histosys["tes"][proc]
        np.testing.assert_allclose(m_hi, hi, rtol=1e-12)
        np.testing.assert_allclose(m_lo, np.maximum(2 * nom - hi, 1e-6), rtol=1e-9)


def test_smoothers_properties():
    x = np.linspace(0.9, 1.2, 15)
    np.testing.assert_allclose(smooth_353h(x), x, rtol=1e-12)  # linear trends survive
    spiky = np.ones(15)
    spiky[7] = 3.0
    assert np.max(np.abs(smooth_353h(spiky) - 1.0)) < 1e-12  # an isolated spike is removed
    poly = 1 + 0.01 * np.arange(10) - 0.002 * np.arange(10) ** 2
    np.testing.assert_allclose(smooth_polynomial(poly, None, 2), poly, rtol=1e-10)
    noisy = poly + np.random.default_rng(0).normal(0, 0.01, 10)
    assert np.std(smooth_polynomial(noisy, None, 2) - poly) < np.std(noisy - poly)


def test_smoothing_acts_on_the_ratio(data):
    raw = PyhfTemplates(bins=10).build(data, MetScore())
    sm = PyhfTemplates(bins=10, smoothing="median").build(data, MetScore())
    for proc in PROCESSES:
        nom = raw.first.raw["nominal"][:, PROCESSES.index(proc)]
        up = raw.first.raw["soft_met_up"][:, PROCESSES.index(proc)]
        ok = nom > 0
        expected = nom * smooth_353h(np.where(ok, up / np.where(ok, nom, 1), 1.0))
        np.testing.assert_allclose(sm.histosys["soft_met"][proc][1][ok],
                                   np.maximum(expected, 1e-6)[ok], rtol=1e-9)


def test_pruning_records_what_it_drops(data):
    t = PyhfTemplates(bins=6, prune_normsys=0.005, prune_shape=1e9).build(data, MetScore())
    assert "bkg_scale" not in t.normsys and "ttbar_scale" in t.normsys
    assert t.histosys == {}
    pruned = t.metadata["pruned"]
    assert any("bkg_scale" in p["where"] and p["type"] == "normsys" for p in pruned)
    assert sum(p["type"] == "histosys" for p in pruned) == 3 * len(PROCESSES)
    names = set(pyhf.Workspace(t.workspace(None)).model().config.par_order)
    assert "bkg_scale" not in names and "tes" not in names
    small = PyhfTemplates(bins=6, prune_shape=1e-3).build(data, MetScore())
    assert "tes" in small.histosys  # a real shape effect survives a small threshold


def _negative_holdout(holdout):
    """Negative weights (as from NLO generators) in the top-score ztautau events."""
    w = holdout.weights.copy()
    z = (holdout.process == PROCESSES.index("ztautau")) & (holdout["PRI_had_pt"] > 90)
    w[z] *= -5.0
    return holdout.with_columns(weights=w)


def test_negative_bins_are_floored_recorded_and_fit_without_nan(holdout):
    data = training_data(_negative_holdout(holdout))
    with pytest.warns(UserWarning, match="negative bins"):
        t = PyhfTemplates(bins=6, binning="uniform").build(data, HadPtScore())
    floored = [f for f in t.metadata["floored"] if "'ztautau' nominal" in f["where"]]
    assert floored and min(floored[0]["values"]) < 0
    assert (t.sample_data["ztautau"] > 0).all()
    assert any("floored" in w for w in t.metadata["warnings"])
    pl = ProfileLikelihood()
    pl.fit(data, HadPtScore(), t)
    for counts in (np.zeros(6), np.array([0, 0, 0, 0, 0, 5000.0]),
                   np.asarray(t.asimov()) * 1.3):
        res = pl.fit_counts(np.asarray(counts, dtype=float))
        assert np.isfinite([res.mu_hat, res.mu16, res.mu84]).all()
        assert all(np.isfinite(v) for v in res.nuisances.values())
    with pytest.raises(ValueError, match="bin"):
        t.workspace({t.channel: [1.0, np.nan, 0, 0, 0, 0]})


def test_negative_bins_raise_when_asked(holdout):
    data = training_data(_negative_holdout(holdout))
    with pytest.raises(ValueError, match=r"channel 'score' sample 'ztautau' nominal bin \d"):
        PyhfTemplates(bins=6, binning="uniform", on_invalid="raise").build(data, HadPtScore())


def test_normsys_lo_not_positive_is_floored_or_raises(holdout):
    priors = dict(PRIORS)
    priors["diboson_scale"] = Prior("normal", 1.0, 1.5, 0.0, 2.0)  # lo = 1 - 1.5 < 0
    data = training_data(holdout)
    data.priors = priors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = PyhfTemplates(bins=5).build(data, HadPtScore())
    hi, lo = t.normsys["diboson_scale"]["diboson"]
    assert hi == pytest.approx(2.5) and lo == pytest.approx(1e-3)
    assert any("diboson_scale" in f["where"] and f["lo"] < 0 for f in t.metadata["floored"])
    pyhf.Workspace(t.workspace(None)).model()
    pl = ProfileLikelihood().setup(t, t.workspace(None))
    res = pl.fit_counts(np.asarray(t.asimov()))
    assert res.mu_hat == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="normsys .*'diboson'.*diboson_scale lo"):
        PyhfTemplates(bins=5, on_invalid="raise").build(data, HadPtScore())


def test_new_parameter_errors_name_the_parameter():
    for kw, word in (({"symmetrise": "both"}, "symmetrise"), ({"smoothing": "spline"}, "smoothing"),
                     ({"on_invalid": "ignore"}, "on_invalid"),
                     ({"prune_shape": -1.0}, "prune_shape")):
        with pytest.raises(ValueError, match=word):
            PyhfTemplates(**kw)
