"""Typed boundaries between the core and the plugins: everything the core calls.

A plugin registers a *factory* (usually a class) under a name; the runner calls
it with the spec's parameters (a declared dataclass, see
:mod:`workbench.plugin.params`, or keywords) and uses the returned object through
one of the protocols below.  The core never imports a plugin.

Data flow: generator -> (train, holdout, test pool) -> classifier.fit ->
template.build -> interval.fit -> interval.predict(pseudo-experiment).

Each kind has one required protocol and optional ones for extra abilities
(a generator that streams chunks, templates that bring their own likelihood, an
interval that fits binned counts, a classifier with gradients...).  The core and
the built-ins test for an ability with ``isinstance(obj, Protocol)``, never with
``hasattr``, so a third-party strategy gets a feature by implementing what is
declared here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from workbench.data.events import Events
from workbench.systematics.nuisance import NuisanceParameters, Prior

if TYPE_CHECKING:  # annotations only: these modules import this one
    from workbench.pipeline import Pipeline
    from workbench.plugin.registry import Registry
    from workbench.spec import Spec
    from workbench.toolkit.aggregate import FeatureBank, MuPrior


@dataclass
class TrainingData:
    """Everything a strategy may learn from; PEs are never shown here.

    ``train`` and ``holdout`` are labelled, weighted, nominal samples whose
    weights per process sum to the expected yield of one pseudo-experiment.
    ``apply_systematics(events, nps, seed)`` shifts a sample (features and
    weights, with thresholds and DER recomputation).  ``sample_pseudo_experiment
    (mu, nps, seed)`` draws a labelled PE from the training pool for strategies
    that learn from simulated pseudo-experiments.
    """

    train: Events
    holdout: Events
    apply_systematics: Callable[[Events, NuisanceParameters, int], Events]
    sample_pseudo_experiment: Callable[[float, NuisanceParameters, int], Events]
    priors: Mapping[str, Prior]
    randomised: tuple[str, ...]
    mu_range: tuple[float, float]
    seed: int
    confidence_level: float = 0.6827
    fixed: NuisanceParameters = field(default_factory=NuisanceParameters)
    """Values of the NPs that are not in ``randomised`` (PEs are generated there)."""
    registry: Registry | None = None
    """The run's registry: composite strategies build their inner strategies from it."""
    output: Path | None = None
    """The run's folder (``None`` outside a run): where a strategy may write logs."""


@runtime_checkable
class Generator(Protocol):
    """An event source: the simulator, a parquet or ROOT file, ..."""

    def generate(self, counts: Mapping[str, int], seed: int) -> Events:
        """Labelled nominal events, ``counts[process]`` of each (``-1``: all the
        source has); weights per process sum to that process's expected yield
        per pseudo-experiment."""
        ...


@runtime_checkable
class ChunkedGenerator(Generator, Protocol):
    """A generator that can stream its events in chunks (bounded memory)."""

    def iter_chunks(
        self, counts: Mapping[str, int], seed: int, chunk_size: int
    ) -> Iterator[Events]:
        """The events of ``generate(counts, seed)`` in chunks of at most ``chunk_size``."""
        ...


@runtime_checkable
class Classifier(Protocol):
    """Maps events to a per-event score; higher is more signal-like."""

    def fit(self, data: TrainingData) -> None: ...

    def predict(self, events: Events) -> np.ndarray: ...


@runtime_checkable
class FeatureClassifier(Classifier, Protocol):
    """A classifier that reads a declared subset of the features."""

    features: Sequence[str]
    """The feature columns it reads, in its input order."""


@runtime_checkable
class GradientClassifier(Classifier, Protocol):
    """A classifier that also gives d score / d feature (for adversarial probes)."""

    def gradient(self, events: Events) -> np.ndarray:
        """Per-event gradient of the score, shape (n_events, n_features): columns in
        ``features`` order for a :class:`FeatureClassifier`, else in ``FEATURES`` order."""
        ...


@runtime_checkable
class TreeEnsemble(Protocol):
    """A boosted-tree model that dumps its trees (as ``xgboost.Booster`` does)."""

    def get_dump(self, fmap: str = "", with_stats: bool = False,
                 dump_format: str = "text") -> list[str]:
        """One string per tree; ``dump_format="json"``: nodes with ``split``,
        ``split_condition`` and ``children``."""
        ...


@runtime_checkable
class TreeClassifier(Classifier, Protocol):
    """A classifier made of boosted trees whose split thresholds can be read."""

    booster: TreeEnsemble | None
    """The fitted trees (``None`` before ``fit``); their feature indices refer to
    ``features`` for a :class:`FeatureClassifier`, else to ``FEATURES``."""


@runtime_checkable
class Templates(Protocol):
    """A binned model: observations of a PE and a pyhf workspace built on them."""

    poi: str

    def observations(self, events: Events) -> dict[str, list[float]]:
        """Per-channel bin counts of an (unweighted) pseudo-experiment."""
        ...

    def workspace(self, observations: Mapping[str, list[float]] | None = None) -> dict:
        """A pyhf workspace spec; ``None`` gives the Asimov data at mu=1, nominal NPs."""
        ...


@runtime_checkable
class BinnedLikelihood(Protocol):
    """A template strategy's own binned likelihood, fitted by the profile fitter.

    Parameters are a flat vector (``par_names``, ``init``, ``bounds``, ``fixed``,
    ``poi_index``); ``n`` is the observation, the channels' counts concatenated in
    ``channels`` order (``nbins`` in all).
    """

    par_names: Sequence[str]
    init: np.ndarray
    bounds: Sequence[tuple[float, float]]
    fixed: Sequence[bool]
    poi_index: int
    channels: Sequence[str]
    nbins: int

    def nll(self, p: np.ndarray, n: np.ndarray, n_const: float) -> float:
        """Negative log-likelihood at ``p`` (``n_const``: the data-only constant)."""
        ...

    def nll_grad(self, p: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Its gradient in ``p``."""
        ...


@runtime_checkable
class LikelihoodTemplates(Templates, Protocol):
    """Templates whose fitted model is not (only) the pyhf workspace they export.

    The profile-likelihood interval fits ``likelihood()``; the workspace stays the
    exportable (possibly approximate) form of it.
    """

    channels: Mapping[str, Any]

    def likelihood(self) -> BinnedLikelihood: ...


@runtime_checkable
class ScoreTemplates(Templates, Protocol):
    """Templates whose observations are classifier-score histograms, channel by channel."""

    channels: Mapping[str, Any]
    """The channels, in observation order."""
    edges: np.ndarray
    """Score bin edges of the first channel (the only one without categories)."""


@runtime_checkable
class EdgedTemplates(Templates, Protocol):
    """Templates that know the bin edges of their channels (for plots and exports)."""

    def bin_edges(self) -> dict[str, list[float]]:
        """Channel name -> its bin edges, in observation order."""
        ...


@runtime_checkable
class ReparametrisedTemplates(Templates, Protocol):
    """Templates whose fitted parameters are not the NPs themselves (e.g. alpha)."""

    def to_physical(self, parameter: str, value: float) -> float:
        """A fitted parameter value as the NP value it stands for."""
        ...


@runtime_checkable
class DescribedTemplates(Templates, Protocol):
    """Templates that record how they were built (floors, prunes, categories)."""

    metadata: dict[str, Any]


@runtime_checkable
class TemplateStrategy(Protocol):
    def build(self, data: TrainingData, classifier: Classifier) -> Templates: ...


@dataclass
class IntervalResult:
    """What an interval strategy reports for one pseudo-experiment."""

    mu_hat: float
    mu16: float
    mu84: float
    nuisances: dict[str, float] = field(default_factory=dict)
    """Fitted NP values (for pull plots); empty when the strategy has none."""
    nuisance_errors: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("mu_hat", "mu16", "mu84"):
            value = float(getattr(self, name))
            if not np.isfinite(value):
                raise ValueError(f"interval result {name} is not finite ({value})")
            setattr(self, name, value)
        if self.mu16 > self.mu84:
            raise ValueError(f"interval has mu16={self.mu16} > mu84={self.mu84}")


@runtime_checkable
class IntervalStrategy(Protocol):
    """Turns a pseudo-experiment into a 68.27% interval on mu.

    Needs no likelihood: ``classifier`` and ``templates`` may be ``None`` when the
    spec names none, and a strategy may regress intervals directly.
    """

    def fit(
        self,
        data: TrainingData,
        classifier: Classifier | None,
        templates: Templates | None,
    ) -> None: ...

    def predict(self, events: Events) -> IntervalResult: ...


@runtime_checkable
class CountsInterval(IntervalStrategy, Protocol):
    """An interval strategy that can fit binned counts directly (no events)."""

    def fit_counts(self, counts: np.ndarray) -> IntervalResult:
        """The interval of one observation: the channels' counts concatenated."""
        ...


@runtime_checkable
class SimulatedStatistic(IntervalStrategy, Protocol):
    """An interval strategy whose point estimate can be simulated in bulk.

    Neyman-belt calibration uses it to avoid one full ``predict`` per toy.
    """

    def simulate_statistic(self, mu: np.ndarray, seed: int,
                           mc_noise: float | None = None) -> np.ndarray:
        """The estimator's value (mu_hat) on simulated PEs at signal strengths ``mu``, NPs
        drawn from their priors; ``mc_noise``: the simulation's MC-statistics noise
        (``None``: the strategy's own)."""
        ...


@runtime_checkable
class AggregateInterval(IntervalStrategy, Protocol):
    """An interval strategy on per-PE aggregated features that can be evaluated on
    simulated feature matrices (the strategies of :mod:`workbench.toolkit.aggregate`).

    ``bank`` simulates feature matrices (``bank.simulate``, ``bank.definition``);
    ``predict_features`` is ``predict`` vectorised over their rows.
    """

    bank: FeatureBank | None
    """The feature bank it was trained on (``None`` before ``fit``)."""
    mu_prior: MuPrior | None
    """The training prior of mu (``None`` before ``fit``)."""

    def features(self, events: Events) -> np.ndarray:
        """The aggregated features of one PE, shape (1, n_features)."""
        ...

    def predict_features(
        self, X: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """``(mu_hat, mu16, mu84, infos)`` per row of a feature matrix."""
        ...


@dataclass
class DiagnosticContext:
    """What a diagnostic gets: the validated spec, the registry (to build and
    retrain strategies), the trained pipeline of the spec (its ``data``,
    ``pool``, ``classifier``, ``templates``, ``interval`` and
    ``pseudo_experiment(task)``), the folder for its files and its own seed.
    """

    spec: Spec
    registry: Registry
    pipeline: Pipeline
    output: Path
    seed: int


@runtime_checkable
class Diagnostic(Protocol):
    """A study run on top of a trained pipeline; returns a JSON-able report."""

    def run(self, context: DiagnosticContext) -> dict[str, Any]: ...
