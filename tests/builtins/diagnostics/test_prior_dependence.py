"""The prior-dependence diagnostic end to end on a small toy pipeline: a stub
classifier on jittered reference events, cheap cell-bank evaluation.  The effect
it must measure is known: a regressor trained on a narrow prior around mu = 1
pulls mu_hat towards 1, so at high mu_true its bias is more negative than the
uniform-prior regressor's; outside the training range both under-cover."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from toys import jittered_events

from workbench.plugin.protocols import DiagnosticContext, TrainingData
from workbench.plugin.registry import get_registry
from workbench.systematics.engine import apply_systematics
from workbench.systematics.nuisance import PRIORS
from workbench_builtins.diagnostics.prior_dependence import bin_table


class _StubClassifier:
    """Signal-like = high visible mass (a fixed, training-free score)."""

    def predict(self, events):
        return 1.0 / (1.0 + np.exp(-(events["DER_mass_vis"] - 90.0) / 15.0))


def _toy_data(events, seed=7):
    w = events.weights.copy()
    w[events.labels == 1] *= 30.0  # a strong signal: sigma(mu) ~ 0.2
    events = events.with_columns(weights=w)
    return TrainingData(train=events, holdout=events, apply_systematics=apply_systematics,
                        sample_pseudo_experiment=None, priors=PRIORS,
                        randomised=("tes", "soft_met", "ttbar_scale"), mu_range=(0.1, 3.0),
                        seed=seed), events


def test_bin_table_against_hand_counts():
    mu = np.array([0.2, 0.3, 1.2, 1.4, 3.5])
    rows = bin_table(mu, mu + 0.1, mu - 0.05, mu + [0.2, -0.01, 0.3, 0.3, 0.3],
                     [(0.1, 1.0), (1.0, 3.0), (3.0, 4.0)])
    assert [r["n"] for r in rows] == [2, 2, 1]
    assert rows[0]["coverage"] == 0.5 and rows[1]["coverage"] == 1.0
    assert rows[0]["bias"] == pytest.approx(0.1)
    assert rows[1]["width"] == pytest.approx(0.35)


def test_diagnostic_measures_prior_pull(tmp_path):
    events = jittered_events(30000, seed=11)
    data, pool = _toy_data(events)
    clf = _StubClassifier()
    pipeline = SimpleNamespace(data=data, pool=pool, classifier=clf, templates=None,
                               interval=None)
    reg = get_registry()
    params = {"n_train_pes": 2500, "n_settings": 4, "max_events_per_process": None,
              "score_bins": 8, "feature_bins": 6, "n_jobs": 1}
    diag = reg.create("diagnostic", "prior-dependence", {
        "strategy_params": params, "reference": None, "pes_per_bin": 300, "n_settings": 4,
        "max_events_per_process": None,
        "mu_bins": [[0.1, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0]],
        "priors": {"uniform": {"mu_prior": "uniform"},
                   "narrow": {"mu_prior": "normal", "mu_prior_loc": 1.0, "mu_prior_scale": 0.2}}})
    ctx = DiagnosticContext(spec=None, registry=reg, pipeline=pipeline, output=tmp_path, seed=3)
    report = diag.run(ctx)
    json.dumps(report)  # JSON-able
    assert (tmp_path / "prior-dependence.png").stat().st_size > 1000
    uni = {b["mu_low"]: b for b in report["variants"]["uniform"]["bins"]}
    nar = {b["mu_low"]: b for b in report["variants"]["narrow"]["bins"]}
    assert all(b["n"] == 300 for b in uni.values())
    # measured pull towards the narrow prior's centre at high mu
    err = np.hypot(uni[2.0]["bias_error"], nar[2.0]["bias_error"])
    assert nar[2.0]["bias"] < uni[2.0]["bias"] - 3 * err
    # inside the range the uniform-prior regressor covers roughly as trained (pooled prior)
    assert 0.5 < uni[1.0]["coverage"] < 0.85
    # outside the training range the learned intervals cannot reach mu_true
    assert uni[3.0]["bias"] < 0 and uni[3.0]["coverage"] < uni[1.0]["coverage"]
    assert set(report["summary"]) == {"variant:uniform", "variant:narrow"}
