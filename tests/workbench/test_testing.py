"""The plugin-author test kit: the built-ins pass the conformance checks, and the
checks catch strategies that break their protocol."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import IntervalResult
from workbench.plugin.registry import get_registry
from workbench.testing import (
    ConformanceError,
    FisherClassifier,
    check_classifier,
    check_generator,
    check_interval_strategy,
    check_template_strategy,
    small_training_data,
)


@pytest.fixture(scope="module")
def registry():
    return get_registry()


def test_fixtures_come_from_the_pytest_plugin(workbench_events, workbench_training_data,
                                              workbench_classifier):
    assert workbench_events.is_labelled and len(workbench_events) > 0
    assert len(workbench_training_data.holdout) == len(workbench_events)
    assert workbench_classifier.predict(workbench_events).shape == (len(workbench_events),)


def test_simulator_conforms(registry):
    events = check_generator(registry.create("generator", "simulator", {}))
    assert len(events) == 1200


def test_xgboost_conforms(registry, workbench_training_data):
    clf = registry.create("classifier", "xgboost", {"n_estimators": 10, "max_depth": 2})
    check_classifier(clf, workbench_training_data)


def test_fisher_toy_classifier_separates_signal(workbench_training_data):
    check_classifier(FisherClassifier(), workbench_training_data)


@pytest.mark.parametrize("name", ["pyhf", "polynomial"])
def test_template_strategies_and_profile_likelihood_conform(registry, name,
                                                            workbench_training_data,
                                                            workbench_classifier):
    templates = check_template_strategy(registry.create("template", name, {"bins": 5}),
                                        workbench_training_data, workbench_classifier)
    results = check_interval_strategy(registry.create("interval", "profile-likelihood", {}),
                                      workbench_training_data, workbench_classifier, templates)
    assert len(results) == 3


# -- the checks fail where they should -------------------------------------------------
class Miscounting:
    """A generator whose weights do not sum to the expected yield."""

    def __init__(self, inner):
        self.inner = inner

    def generate(self, counts, seed):
        events = self.inner.generate(counts, seed)
        return events.with_columns(weights=events.weights * 2.0)


def test_generator_with_wrong_yields_fails(registry):
    with pytest.raises(ConformanceError, match="weights sum to .* not the expected yield"):
        check_generator(Miscounting(registry.create("generator", "simulator", {})))


class Unseeded:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def generate(self, counts, seed):
        self.calls += 1
        return self.inner.generate(counts, seed + self.calls)


def test_generator_ignoring_its_seed_fails(registry):
    with pytest.raises(ConformanceError, match="twice gave different events"):
        check_generator(Unseeded(registry.create("generator", "simulator", {})))


class Backwards(FisherClassifier):
    def predict(self, events):
        return 1.0 - super().predict(events)


def test_classifier_ranking_background_higher_fails(workbench_training_data):
    with pytest.raises(ConformanceError, match="do not rank signal above background"):
        check_classifier(Backwards(), workbench_training_data)


class Noisy:
    """An interval strategy whose answer changes from call to call."""

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def fit(self, data, classifier, templates):
        pass

    def predict(self, events):
        x = float(self.rng.uniform(0.5, 1.5))
        return IntervalResult(mu_hat=x, mu16=x - 0.2, mu84=x + 0.2)


def test_nondeterministic_interval_fails(workbench_training_data):
    with pytest.raises(ConformanceError, match="twice on the same events"):
        check_interval_strategy(Noisy(), workbench_training_data)


class WrongGradient:
    """Polynomial templates whose likelihood reports a wrong gradient."""

    def __init__(self, inner):
        self.inner = inner

    def build(self, data, classifier):
        templates = self.inner.build(data, classifier)
        lik = templates.likelihood()
        good = lik.nll_grad
        lik.nll_grad = lambda p, n: 1.5 * good(p, n)
        templates.likelihood = lambda: lik
        return templates


def test_likelihood_with_a_wrong_gradient_fails(registry, workbench_training_data,
                                                workbench_classifier):
    strategy = WrongGradient(registry.create("template", "polynomial", {"bins": 5}))
    with pytest.raises(ConformanceError, match="finite differences"):
        check_template_strategy(strategy, workbench_training_data, workbench_classifier)


def test_small_training_data_is_a_scaled_run_sample():
    data = small_training_data(seed=3, luminosity_fraction=0.1)
    sums = data.holdout.sum_weights(by_process=True)
    assert np.isclose(sums["ztautau"], 100239.5, rtol=1e-6)
    with pytest.raises(ValueError, match="luminosity_fraction"):
        small_training_data(luminosity_fraction=0)
