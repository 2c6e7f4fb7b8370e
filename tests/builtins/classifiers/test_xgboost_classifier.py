"""xgboost classifier: it learns, it is deterministic, augmentation shifts the training set."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm, rankdata

from workbench.data.derived import compute_derived
from workbench.data.events import Events
from workbench.data.schema import EXPECTED_EVENTS, FEATURES, PRIMARY, PROCESSES
from workbench.plugin.protocols import TrainingData
from workbench.plugin.registry import PluginError, get_registry
from workbench.systematics.engine import apply_systematics
from workbench.systematics.nuisance import PRIORS
from workbench_builtins.classifiers.xgboost_classifier import XGBoostClassifier, balanced_weights


def toy_events(n_per_process: int, seed: int) -> Events:
    """Labelled toy events: signal has a harder tau and a wider lepton-tau opening."""
    rng = np.random.default_rng(seed)
    parts = []
    for code, proc in enumerate(PROCESSES):
        n, sig = n_per_process, proc == "htautau"
        c = {name: np.full(n, -25.0) for name in PRIMARY}
        c["PRI_lep_pt"] = 20 + rng.exponential(15, n)
        c["PRI_had_pt"] = 22 + rng.exponential(35 if sig else 15, n)
        for obj in ("lep", "had"):
            c[f"PRI_{obj}_eta"] = rng.uniform(-2.5, 2.5, n)
        c["PRI_lep_phi"] = rng.uniform(-np.pi, np.pi, n)
        c["PRI_had_phi"] = c["PRI_lep_phi"] + np.pi + rng.normal(0, 0.4 if sig else 1.2, n)
        c["PRI_had_phi"] = np.mod(c["PRI_had_phi"] + np.pi, 2 * np.pi) - np.pi
        c["PRI_met"] = rng.exponential(25, n)
        c["PRI_met_phi"] = rng.uniform(-np.pi, np.pi, n)
        c["PRI_n_jets"] = np.zeros(n)
        c["PRI_jet_all_pt"] = np.zeros(n)
        c = {k: np.round(v, 3) for k, v in c.items()}
        c.update(compute_derived(c))
        c["process"] = np.full(n, code)
        c["weights"] = np.full(n, EXPECTED_EVENTS[proc] / n)
        parts.append(Events.from_columns(c))
    return Events.concatenate(parts)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney U / (n1 n0): the probability a signal event outscores a background one."""
    ranks = rankdata(scores)
    n1 = int(labels.sum())
    n0 = len(labels) - n1
    return float((ranks[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def data_for(train: Events, seed: int = 3, randomised=("tes", "jes", "soft_met")):
    return TrainingData(
        train=train, holdout=train, apply_systematics=apply_systematics,
        sample_pseudo_experiment=lambda mu, nps, s: None, priors=PRIORS,
        randomised=tuple(randomised), mu_range=(0.1, 3.0), seed=seed,
    )


@pytest.fixture(scope="module")
def train():
    return toy_events(1500, seed=1)


@pytest.fixture(scope="module")
def test_sample():
    return toy_events(1500, seed=2)


@pytest.fixture(scope="module")
def fitted(train):
    clf = XGBoostClassifier(n_estimators=60, max_depth=3, n_jobs=1)
    clf.fit(data_for(train))
    return clf


def test_learns_a_separable_toy(fitted, test_sample):
    scores = fitted.predict(test_sample)
    assert scores.dtype == np.float32 and scores.shape == (len(test_sample),)
    assert ((scores >= 0) & (scores <= 1)).all()
    value = auc(scores, test_sample.labels)
    # Independent truth: the AUC of the exact likelihood ratio of the toy's two
    # discriminating inputs (tau pT exponential slopes, wrapped-normal lepton-tau dphi).
    x = test_sample["PRI_had_pt"] - 22.0
    dphi = np.mod(test_sample["PRI_had_phi"] - test_sample["PRI_lep_phi"], 2 * np.pi) - np.pi
    wrapped = lambda d, s: sum(norm.pdf(d + 2 * np.pi * k, 0, s) for k in range(-3, 4))  # noqa: E731
    llr = x / 15 - x / 35 + np.log(wrapped(dphi, 0.4) / wrapped(dphi, 1.2))
    oracle = auc(llr, test_sample.labels)
    assert oracle > 0.8  # the toy is separable ...
    assert value > oracle - 0.06, (value, oracle)  # ... and the classifier gets close
    assert fitted.info["n_trees"] <= 60
    assert fitted.predict(test_sample[:0]).shape == (0,)


def test_same_seed_same_model_different_data_seed_differs(train, test_sample, fitted):
    again = XGBoostClassifier(n_estimators=60, max_depth=3, n_jobs=1)
    again.fit(data_for(train))
    np.testing.assert_array_equal(again.predict(test_sample), fitted.predict(test_sample))
    other = XGBoostClassifier(n_estimators=60, max_depth=3, n_jobs=1)
    other.fit(data_for(train, seed=4))  # another validation split
    assert not np.array_equal(other.predict(test_sample), fitted.predict(test_sample))


def test_balanced_weights_give_each_class_half():
    labels = np.array([1, 1, 0, 0, 0, 0])
    w = balanced_weights(labels, np.array([1.0, 3.0, 100.0, 100.0, 50.0, 50.0]))
    assert w[labels == 1].sum() == pytest.approx(3.0)
    assert w[labels == 0].sum() == pytest.approx(3.0)
    assert w[0] / w[1] == pytest.approx(1 / 3)  # relative weights within a class are kept
    with pytest.raises(ValueError, match="signal"):
        balanced_weights(np.zeros(3, dtype=int), np.ones(3))


def test_augmentation_adds_shifted_copies(train):
    data = data_for(train)
    plain_fit, plain_val = XGBoostClassifier().training_set(data)
    aug = XGBoostClassifier(systematics_augmentation=True, augmentation_copies=2)
    aug_fit, aug_val = aug.training_set(data)
    assert len(aug_val) == len(plain_val)  # validation stays nominal
    n = len(plain_fit)
    # Two shifted copies (minus events the 26 GeV thresholds drop) were added.
    assert 2 * n < len(aug_fit) <= 3 * n
    copy = aug_fit[n:]
    assert not np.allclose(np.sort(copy["PRI_met"][: n // 2]), np.sort(plain_fit["PRI_met"][: n // 2]))
    # NPs not randomised are not shifted: with nothing randomised the copies equal the
    # thresholded nominal sample.
    fixed = data_for(train, randomised=())
    fit_fixed, _ = aug.training_set(fixed)
    nominal_copy = apply_systematics(plain_fit, fixed.fixed, 0)
    assert len(fit_fixed) == n + 2 * len(nominal_copy)
    np.testing.assert_array_equal(fit_fixed[n:n + len(nominal_copy)]["PRI_had_pt"],
                                  nominal_copy["PRI_had_pt"])


def test_feature_subset_and_errors(train):
    clf = XGBoostClassifier(n_estimators=5, features=["PRI_had_pt", "DER_mass_vis"], n_jobs=1)
    clf.fit(data_for(train))
    assert clf.booster.num_features() == 2
    assert clf.predict(train[:10]).shape == (10,)
    with pytest.raises(ValueError, match="PRI_bogus"):
        XGBoostClassifier(features=["PRI_bogus"])
    with pytest.raises(RuntimeError, match="before fit"):
        XGBoostClassifier().predict(train)
    assert len(FEATURES) == 28 and XGBoostClassifier().features == FEATURES


def test_registered_through_entry_points():
    registry = get_registry(refresh=True)
    assert registry.get("classifier", "xgboost").factory is XGBoostClassifier
    clf = registry.create("classifier", "xgboost", {"n_estimators": 7, "max_depth": 2})
    assert clf.n_estimators == 7
    with pytest.raises(PluginError, match="unknown parameter"):
        registry.create("classifier", "xgboost", {"trees": 7})


def test_forked_worker_predicts_single_threaded(train, test_sample):
    """In a process forked after fitting (the "processes" executor shares the
    pipeline by fork), prediction uses one OpenMP thread: GNU OpenMP's pool does
    not survive fork(), and a multi-threaded prediction there waited forever.
    Scores are unchanged; the parent keeps its threads."""
    import multiprocessing
    import os

    global _FORKED
    clf = XGBoostClassifier(n_estimators=30, max_depth=3, n_jobs=2)
    clf.fit(data_for(train))
    expected = clf.predict(test_sample)  # OpenMP threads used in this (parent) process
    assert _nthread(clf) == 2
    _FORKED = (clf, test_sample)
    try:
        with multiprocessing.get_context("fork").Pool(1) as pool:
            scores, threads = pool.apply_async(_predict_in_child).get(timeout=60)
    finally:
        _FORKED = None
    np.testing.assert_array_equal(scores, expected)
    assert threads == 1
    assert _nthread(clf) == 2 and clf._fit_pid == os.getpid()


_FORKED = None  # (classifier, events), shared with the forked child as the executor does


def _nthread(clf) -> int:
    import json

    return int(json.loads(clf.booster.save_config())["learner"]["generic_param"]["nthread"])


def _predict_in_child():
    clf, events = _FORKED
    return clf.predict(events), _nthread(clf)
