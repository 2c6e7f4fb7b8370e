"""The built-ins obey the plugin contract: declared parameters (a spec table, the
dataclass and keywords build the same strategy; shared sets by inheritance; errors
name the parameter), abilities as protocols, composites built from the run's registry."""

from __future__ import annotations

import dataclasses
import types
import typing

import numpy as np
import pytest
from toys import REFERENCE_SAMPLE, synthetic_events, training_data

from workbench import (
    AggregateInterval,
    CountsInterval,
    FeatureClassifier,
    GradientClassifier,
    IntervalResult,
    SimulatedStatistic,
    TreeClassifier,
    hookimpl,
)
from workbench.plugin.registry import PluginError, build_registry, get_registry
from workbench.toolkit.aggregate import AggregateParams, QuantileRegressorParams
from workbench.toolkit.templates import HistFactoryParams
from workbench_builtins.classifiers.xgboost_classifier import XGBoostClassifier
from workbench_builtins.generators.files import FileSourceParams, RootSourceParams
from workbench_builtins.intervals.bin_classifier import (
    BinClassifierInterval,
    BinClassifierParams,
    HybridInterval,
    HybridParams,
)
from workbench_builtins.intervals.calibrated import CalibratedInterval
from workbench_builtins.intervals.profile_likelihood import ProfileLikelihood
from workbench_builtins.intervals.quantile_regression import (
    QuantileRegressionInterval,
    QuantileRegressionParams,
)
from workbench_builtins.intervals.sideband import (
    SidebandGenerator,
    SidebandGeneratorParams,
    SidebandIntervalParams,
    SidebandModelParams,
)
from workbench_builtins.templates.polynomial import PolynomialParams

OURS = {
    "generator": ["simulator", "parquet", "sideband"],
    "classifier": ["xgboost"],
    "template": ["pyhf", "polynomial"],
    "interval": ["profile-likelihood", "quantile-regression", "bin-classifier", "hybrid",
                 "calibrated", "sideband"],
    "diagnostic": ["adversarial", "prior-dependence"],
}
REQUIRED = {("generator", "parquet"): {"path": str(REFERENCE_SAMPLE)}}


@pytest.mark.parametrize("kind, name", [(k, n) for k, names in OURS.items() for n in names])
def test_spec_table_dataclass_and_keywords_build_the_same_strategy(kind, name):
    strategy = get_registry().get(kind, name)
    assert dataclasses.is_dataclass(strategy.params_type)
    required = REQUIRED.get((kind, name), {})
    from_spec = get_registry().create(kind, name, required)
    from_instance = strategy.factory(strategy.params_type(**required))
    from_keywords = strategy.factory(**required)
    assert from_spec.params == from_instance.params == from_keywords.params
    assert from_spec.params == strategy.params_type(**required)
    # keyword overrides on top of an instance
    name = next(f.name for f in dataclasses.fields(strategy.params_type) if f.name not in required)
    again = strategy.factory(from_spec.params, **{name: getattr(from_spec.params, name)})
    assert again.params == from_spec.params


def test_every_builtin_is_registered_with_its_parameters():
    registry = build_registry()
    for kind, names in [*OURS.items(), ("generator", ["root"])]:
        for name in names:
            params = registry.get(kind, name).params_type
            assert params is not None, (kind, name)
            # resolvable annotations: otherwise the registry could not check the types
            assert set(typing.get_type_hints(params)) >= {f.name for f in
                                                          dataclasses.fields(params)}
    assert registry.get("generator", "root").params_type is RootSourceParams


def test_shared_parameter_sets_are_inherited():
    for cls in (QuantileRegressionParams, BinClassifierParams, HybridParams):
        assert issubclass(cls, AggregateParams)
    assert issubclass(QuantileRegressionParams, QuantileRegressorParams)
    assert issubclass(PolynomialParams, HistFactoryParams)
    assert issubclass(RootSourceParams, FileSourceParams)
    assert issubclass(SidebandIntervalParams, SidebandModelParams)
    assert issubclass(SidebandGeneratorParams, SidebandModelParams)
    shared = {f.name for f in dataclasses.fields(AggregateParams)}
    assert shared <= {f.name for f in dataclasses.fields(HybridParams)}
    assert {"n_estimators", "conformal"}.isdisjoint({f.name for f in dataclasses.fields(
        HybridParams)})


@pytest.mark.parametrize("kind, name, params, needle", [
    ("template", "pyhf", {"bins": 0}, "bins"),
    ("template", "pyhf", {"smoothing": "spline"}, "smoothing"),
    ("template", "polynomial", {"degree": 0}, "degree"),
    ("template", "polynomial", {"categories": "nbjets"}, "categories"),
    ("interval", "quantile-regression", {"n_train_pes": 10}, "n_train_pes"),
    ("interval", "quantile-regression", {"n_train_pes": "many"}, "n_train_pes"),
    ("interval", "quantile-regression", {"features": ["PRI_bogus"]}, "features"),
    ("interval", "bin-classifier", {"n_mu_bins": 1}, "n_mu_bins"),
    ("interval", "hybrid", {"edge_threshold": -1.0}, "edge_threshold"),
    ("interval", "hybrid", {"inflation": 0.0}, "inflation"),
    ("interval", "calibrated", {"n_grid": 2}, "n_grid"),
    ("interval", "calibrated", {"mc_noise": -1.0}, "mc_noise"),
    ("interval", "sideband", {"signal_efficiency": 1.5}, "signal_efficiency"),
    ("interval", "sideband", {"edges": [1.0, 0.5, 2.0]}, "edges"),
    ("generator", "sideband", {"luminosity_scale": 0.0}, "luminosity_scale"),
    ("generator", "simulator", {"batch_size": 0}, "batch_size"),
    ("generator", "parquet", {"path": str(REFERENCE_SAMPLE), "reweight": "bogus"}, "reweight"),
    ("classifier", "xgboost", {"validation_fraction": 1.5}, "validation_fraction"),
    ("diagnostic", "adversarial", {"working_point": 2.0}, "working_point"),
    ("diagnostic", "prior-dependence", {"mu_bins": [[1.0, 0.5]]}, "mu_bins"),
    ("diagnostic", "prior-dependence", {"evaluation": "toys"}, "evaluation"),
])
def test_parameter_errors_name_the_parameter_and_the_strategy(kind, name, params, needle):
    with pytest.raises(PluginError, match=needle) as info:
        get_registry().create(kind, name, params)
    assert f"{kind} {name!r}" in str(info.value)


def test_from_python_a_range_error_is_a_value_error_naming_the_parameter():
    with pytest.raises(ValueError, match="quantile-regression: n_train_pes=10"):
        QuantileRegressionInterval(n_train_pes=10)
    with pytest.raises(ValueError, match="expected BinClassifierParams"):
        BinClassifierInterval(QuantileRegressionParams())


def test_hybrid_uses_the_quantile_regression_model_with_its_defaults():
    hybrid, qr = HybridInterval(n_jobs=1), QuantileRegressionInterval(n_jobs=1)
    assert hybrid.qr.settings == qr.model.settings
    assert hybrid.bc.params.n_mu_bins == hybrid.params.n_mu_bins
    # the tweaks act once, on the combination
    tweaked = HybridInterval(inflation=1.5, clip_to_range=True)
    assert (tweaked.bc.inflation, tweaked.bc.clip_to_range) == (1.0, False)


def test_abilities_are_protocols():
    clf = XGBoostClassifier()
    assert isinstance(clf, TreeClassifier) and isinstance(clf, FeatureClassifier)
    assert not isinstance(clf, GradientClassifier)
    for strategy in (QuantileRegressionInterval(), BinClassifierInterval(), HybridInterval()):
        assert isinstance(strategy, AggregateInterval)
        assert isinstance(strategy, SimulatedStatistic)
    calibrated = CalibratedInterval()
    assert not isinstance(calibrated, AggregateInterval)
    assert not isinstance(calibrated, SimulatedStatistic)
    assert isinstance(ProfileLikelihood(), CountsInterval)
    assert not isinstance(QuantileRegressionInterval(), CountsInterval)


class _FakeInner:
    """An inner strategy with a Gaussian estimator, known only to a private registry."""

    def __init__(self, sigma: float = 0.2):
        self.sigma = sigma

    def fit(self, data, classifier, templates):
        pass

    def predict(self, events):
        return IntervalResult(1.0, 0.8, 1.2)

    def simulate_statistic(self, mu, seed, mc_noise=None):
        rng = np.random.default_rng(seed)
        return np.asarray(mu) + self.sigma * rng.normal(size=np.size(mu))


class _FakeSource:
    def generate(self, counts, seed):  # pragma: no cover - not called
        raise NotImplementedError


def _private_registry():
    plugin = types.ModuleType("contract_fakes")

    @hookimpl
    def register_intervals(register):
        register("fake-inner", _FakeInner)

    @hookimpl
    def register_generators(register):
        register("fake-source", _FakeSource)

    plugin.register_intervals = register_intervals
    plugin.register_generators = register_generators
    return build_registry(extra_plugins={"contract-fakes": plugin})


def test_calibrated_builds_its_inner_strategy_from_the_runs_registry():
    registry = _private_registry()
    data = dataclasses.replace(training_data(synthetic_events(20, seed=1)), registry=registry)
    cal = CalibratedInterval(inner="fake-inner", inner_params={"sigma": 0.1}, n_grid=5,
                             n_toys=50)
    cal.fit(data, None, None)
    assert isinstance(cal.inner, _FakeInner) and cal.inner.sigma == 0.1
    assert cal.fit_info["simulation"] == "cell-bank"  # the SimulatedStatistic fast path
    # without a run's registry the process-wide one is used, which does not know it
    with pytest.raises(PluginError, match="fake-inner"):
        CalibratedInterval(inner="fake-inner").fit(training_data(synthetic_events(20, seed=1)),
                                                   None, None)


def test_sideband_generator_builds_its_source_from_its_registry():
    gen = SidebandGenerator(source="fake-source")
    gen.registry = _private_registry()
    assert isinstance(gen._source(), _FakeSource)
