"""Adversarial diagnostic: perturbation physics, known answers of the search, constraints."""

from __future__ import annotations

import types

import numpy as np
import pytest
from scipy.stats import ks_2samp

from workbench.data.schema import FEATURES, PRIMARY
from workbench.plugin.protocols import TrainingData
from workbench.systematics.engine import apply_systematics, systematics_columns
from workbench.systematics.nuisance import NP_NAMES, PRIORS, NuisanceParameters
from workbench_builtins.classifiers.xgboost_classifier import XGBoostClassifier
from workbench_builtins.diagnostics.adversarial import (
    AdversarialProbe,
    ks_statistic,
    perturb_primaries,
    tree_split_thresholds,
)
from workbench_builtins.generators.simulator import Simulator

MET_FEATURES = ("PRI_met", "PRI_met_phi", "DER_mass_transverse_met_lep", "DER_pt_h",
                "DER_pt_tot", "DER_met_phi_centrality")
SMALL = dict(fooling_events=3000, constraint_events=8000, noise_splits=8, c2st_splits=1,
             evaluations=24, mu_probe=False, plots=False)


@pytest.fixture(scope="module")
def data():
    sim = Simulator()
    counts = {"htautau": 6000, "ztautau": 30000, "ttbar": 6000, "diboson": 1500}
    return TrainingData(
        train=sim.generate(counts, 1), holdout=sim.generate(counts, 2),
        apply_systematics=apply_systematics, sample_pseudo_experiment=None,
        priors=PRIORS, randomised=NP_NAMES, mu_range=(0.1, 3.0), seed=5)


def _xgb(data, features=None):
    clf = XGBoostClassifier(n_estimators=40, max_depth=4, n_jobs=2, features=features)
    clf.fit(data)
    return clf


@pytest.fixture(scope="module")
def full_clf(data):
    return _xgb(data)


@pytest.fixture(scope="module")
def met_blind_clf(data):
    return _xgb(data, [f for f in FEATURES if f not in MET_FEATURES])


def _context(data, clf, tmp_path=None, seed=3):
    pipeline = types.SimpleNamespace(data=data, classifier=clf, interval=None, pool=None)
    return types.SimpleNamespace(pipeline=pipeline, seed=seed, output=tmp_path, spec=None,
                                 registry=None)


def test_had_scale_equals_tes_and_met_balance(data):
    """One sigma of had_scale is tes = 1.01 (MET absorbs the tau change): an independent path."""
    pri = {k: data.holdout[k].astype(np.float64) for k in PRIMARY}
    nps = NuisanceParameters()
    ours, _ = systematics_columns(perturb_primaries(pri, {"had_scale": 1.0}), nps, 1,
                                  thresholds=False)
    ref, _ = systematics_columns(pri, NuisanceParameters(tes=1.01), 1, thresholds=False)
    for f in ("PRI_had_pt", "PRI_met", "DER_mass_vis"):
        np.testing.assert_allclose(ours[f], ref[f], atol=2e-3, rtol=1e-5, err_msg=f)
    # a pure soft-term scale keeps every object and changes the MET
    soft = perturb_primaries(pri, {"met_soft_scale": 2.0})
    for f in PRIMARY:
        if f not in ("PRI_met", "PRI_met_phi"):
            np.testing.assert_array_equal(soft[f], pri[f], err_msg=f)
    assert np.mean(np.abs(soft["PRI_met"] - pri["PRI_met"])) > 0.1


def test_ks_statistic_matches_scipy(data):
    a, b = data.holdout["DER_mass_vis"][:3000], data.train["DER_mass_vis"][:2000]
    assert ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)


def test_met_blind_classifier_is_not_fooled_through_met(data, full_clf, met_blind_clf):
    blind = AdversarialProbe(parameters=["met_soft_scale"], epsilons=[1.0, 3.0], **SMALL)
    objective, constraints, _ = blind.prepare(data, met_blind_clf, 11)
    # the trees never split on a MET feature: no threshold is crossed, no score moves
    thr = tree_split_thresholds(met_blind_clf.booster, met_blind_clf.features)
    assert not set(thr) & set(MET_FEATURES)
    assert blind.crossing_scores(objective, 3.0) == {"met_soft_scale": 0.0}
    res = objective.evaluate({"met_soft_scale": 3.0})
    assert res["max_abs_score_change"] == 0.0 and res["fooling_rate"] == 0.0
    report = blind.run(_context(data, met_blind_clf))
    assert all(c["fooling_rate"] == 0.0 for c in report["curve"])
    # control: the same MET perturbation does move a classifier that uses MET
    objective_full, _, _ = blind.prepare(data, full_clf, 11)
    assert objective_full.evaluate({"met_soft_scale": 3.0})["max_abs_score_change"] > 1e-3


def test_fooling_rate_monotonic_and_constraints_hold(data, full_clf):
    probe = AdversarialProbe(epsilons=[0.0, 0.5, 3.0], **SMALL)
    report = probe.run(_context(data, full_clf))
    rates = [c["fooling_rate"] for c in report["curve"]]
    assert rates[0] == 0.0
    assert all(b >= a for a, b in zip(rates, rates[1:]))
    assert rates[-1] > rates[0]
    # every optimum stays inside the noise thresholds, re-measured with scipy's KS
    objective, constraints, _ = probe.prepare(data, full_clf, 3)
    thr = report["thresholds"]
    nominal = constraints.sample.nominal
    for c in report["curve"][1:]:
        assert all(abs(v) <= c["epsilon"] + 1e-12 for v in c["theta"].values())
        cols, _ = constraints.sample.features(c["theta"])
        for f, limit in thr["ks"].items():
            assert ks_2samp(cols[f], nominal[f]).statistic <= limit + 1e-12, (c["epsilon"], f)
        assert c["constraints"]["corr_frobenius"] <= thr["corr_frobenius"]
    # and without constraints the same budget fools more: the constraints bind
    loose = AdversarialProbe(epsilons=[3.0], margin=1e6, **SMALL)
    assert loose.run(_context(data, full_clf))["curve"][-1]["fooling_rate"] >= rates[-1]


class LogisticClassifier:
    """A differentiable classifier (logistic regression on standardised features)."""

    features = ("PRI_had_pt", "PRI_lep_pt", "DER_mass_vis", "PRI_met")

    def fit(self, data):
        x = data.train.feature_matrix(self.features).astype(np.float64)
        y = data.train.labels
        self.mean, self.std = x.mean(0), x.std(0)
        z = (x - self.mean) / self.std
        w = np.zeros(z.shape[1] + 1)
        for _ in range(300):  # gradient ascent on the balanced log-likelihood
            p = 1 / (1 + np.exp(-(z @ w[1:] + w[0])))
            g = np.where(y == 1, 1.0 / y.mean(), 1.0 / (1 - y.mean())) * (y - p)
            w += 0.5 * np.r_[g.mean(), (z * g[:, None]).mean(0)]
        self.w = w

    def predict(self, events):
        z = (events.feature_matrix(self.features) - self.mean) / self.std
        return 1 / (1 + np.exp(-(z @ self.w[1:] + self.w[0])))

    def gradient(self, events):
        p = self.predict(events)
        return (p * (1 - p))[:, None] * (self.w[1:] / self.std)[None, :]


def test_gradient_hook_is_used(data):
    clf = LogisticClassifier()
    clf.fit(data)
    probe = AdversarialProbe(parameters=["had_scale", "lep_scale", "met_soft_scale"],
                             epsilons=[2.0], gradient_steps=4, **SMALL)
    calls = []
    original = clf.gradient
    clf.gradient = lambda ev: calls.append(len(ev)) or original(ev)
    report = probe.run(_context(data, clf))
    assert report["gradient_hook"] and calls
    assert report["curve"][-1]["fooling_rate"] > 0.0


def test_unknown_parameter_is_rejected():
    with pytest.raises(ValueError, match="n_jets_scale"):
        AdversarialProbe(parameters=["n_jets_scale"])


@pytest.mark.slow
def test_cli_diagnose_end_to_end(tmp_path):
    """`workbench diagnose specs/adversarial.toml` (reduced sizes): report, mu probe, plots."""
    import json
    from pathlib import Path

    from workbench.cli import main

    spec = Path(__file__).parents[3] / "specs" / "adversarial.toml"
    sets = ["data.train={htautau=8000,ztautau=20000,ttbar=6000,diboson=2000}",
            "data.holdout={htautau=8000,ztautau=60000,ttbar=8000,diboson=2000}",
            "data.test_pool={htautau=8000,ztautau=80000,ttbar=8000,diboson=2000}",
            "diagnostics=[{name='adversarial',params={epsilons=[1.0],evaluations=20,"
            "fooling_events=3000,constraint_events=8000,noise_splits=6,mu_evaluations=6}}]"]
    args = ["diagnose", str(spec), "-o", str(tmp_path)]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0
    report = json.loads((tmp_path / "diagnostics" / "adversarial.json").read_text())
    m = report["mu_probe"]
    assert m["half_width"] > 0 and m["interval_calls"] >= 3
    assert abs(m["delta_mu"]) >= 0.0 and m["delta_mu_tes"] != 0.0
    assert all(Path(p).exists() for p in report["plots"])
