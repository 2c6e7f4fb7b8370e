"""Typed boundaries between the core and the plugins.

A plugin registers a *factory* (usually a class) under a name; the runner calls
it with the spec's parameters as keyword arguments and uses the returned object
through one of the protocols below.  The core never imports a plugin.

Data flow: generator -> (train, holdout, test pool) -> classifier.fit ->
template.build -> interval.fit -> interval.predict(pseudo-experiment).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .events import Events
from .nuisance import NuisanceParameters, Prior


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
    def iter_chunks(
        self, counts: Mapping[str, int], seed: int, chunk_size: int
    ) -> Iterator[Events]: ...


@runtime_checkable
class Classifier(Protocol):
    """Maps events to a per-event score; higher is more signal-like."""

    def fit(self, data: TrainingData) -> None: ...

    def predict(self, events: Events) -> np.ndarray: ...


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


@dataclass
class DiagnosticContext:
    """What a diagnostic gets: the validated spec, the registry (to build and
    retrain strategies), the trained pipeline of the spec, and the pool and
    helpers to draw pseudo-experiments.  ``pipeline`` has ``data``
    (TrainingData), ``pool``, ``classifier``, ``templates``, ``interval``.
    """

    spec: Any
    registry: Any
    pipeline: Any
    output: Any
    seed: int


@runtime_checkable
class Diagnostic(Protocol):
    """A study run on top of a trained pipeline; returns a JSON-able report."""

    def run(self, context: DiagnosticContext) -> dict[str, Any]: ...
