"""Small, deterministic training material for plugin tests."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from workbench.data.events import Events
from workbench.data.schema import EXPECTED_EVENTS, FEATURES, PROCESSES, SIGNAL
from workbench.plugin.protocols import TrainingData
from workbench.plugin.registry import Registry, get_registry
from workbench.pseudo_experiments import sample_pseudo_experiment
from workbench.seeds import derive_seed
from workbench.systematics.engine import apply_systematics
from workbench.systematics.nuisance import NP_NAMES, PRIORS, NuisanceParameters

SMALL_COUNTS = {"htautau": 2000, "ztautau": 4000, "ttbar": 1500, "diboson": 600}
"""Events per process of the default small sample (a few hundred milliseconds to make)."""


def small_events(counts: Mapping[str, int] | None = None, seed: int = 0, *,
                 generator: str = "simulator", registry: Registry | None = None) -> Events:
    """Labelled nominal events from a registered generator; weights per process sum
    to one pseudo-experiment's expected yield, as a spec's samples do."""
    registry = registry or get_registry()
    counts = dict(SMALL_COUNTS if counts is None else counts)
    events = registry.create("generator", generator, {}).generate(counts, seed)
    # the generator already normalises per process; make sure of it for any source
    sums = events.sum_weights(by_process=True)
    scale = np.array([EXPECTED_EVENTS[p] / sums[p] if sums.get(p) else 0.0 for p in PROCESSES])
    return events.with_columns(weights=events.weights * scale[events.process])


def small_training_data(seed: int = 0, *, counts: Mapping[str, int] | None = None,
                        luminosity_fraction: float = 0.02,
                        randomised: tuple[str, ...] = NP_NAMES,
                        registry: Registry | None = None) -> TrainingData:
    """A TrainingData as the runner builds it, on small disjoint train and holdout samples.

    Weights are scaled to ``luminosity_fraction`` of the challenge's 10 fb^-1, so a
    pseudo-experiment drawn from it has about 21k events at the default (a spec's
    ``data.luminosity_fb`` does the same).
    """
    if not 0 < luminosity_fraction <= 1:
        raise ValueError(f"luminosity_fraction={luminosity_fraction} must be in (0, 1]")
    train, holdout = (
        small_events(counts, derive_seed(seed, part), registry=registry)
        for part in ("train", "holdout"))
    train = train.with_columns(weights=train.weights * luminosity_fraction)
    holdout = holdout.with_columns(weights=holdout.weights * luminosity_fraction)

    def training_pe(mu: float, nps: NuisanceParameters, pe_seed: int) -> Events:
        return sample_pseudo_experiment(holdout, mu, nps, pe_seed)

    return TrainingData(
        train=train, holdout=holdout, apply_systematics=apply_systematics,
        sample_pseudo_experiment=training_pe, priors=dict(PRIORS),
        randomised=tuple(randomised), mu_range=(0.1, 3.0), seed=derive_seed(seed, "training"),
        registry=registry or get_registry(),
    )


class FisherClassifier:
    """A fitted-in-closed-form toy classifier: Fisher's linear discriminant on the
    28 features (undefined values as they are), squashed to (0, 1).

    Deterministic and fast, so tests of template and interval strategies do not
    depend on a boosted-tree fit.
    """

    def __init__(self) -> None:
        self.w: np.ndarray | None = None
        self.c = 0.0
        self.s = 1.0

    def _matrix(self, events: Events) -> np.ndarray:
        return np.column_stack([np.asarray(events[f], dtype=np.float64) for f in FEATURES])

    def fit(self, data: TrainingData) -> None:
        x = self._matrix(data.train)
        sig = data.train.process == PROCESSES.index(SIGNAL)
        w = data.train.weights
        m1 = np.average(x[sig], axis=0, weights=w[sig])
        m0 = np.average(x[~sig], axis=0, weights=w[~sig])
        cov = np.cov(x, rowvar=False, aweights=w) + 1e-6 * np.eye(x.shape[1])
        self.w = np.linalg.solve(cov, m1 - m0)
        t = x @ self.w
        self.c, self.s = float(np.median(t)), float(np.std(t) or 1.0)

    def fitted(self, data: TrainingData) -> FisherClassifier:
        self.fit(data)
        return self

    def predict(self, events: Events) -> np.ndarray:
        if self.w is None:
            raise RuntimeError("FisherClassifier.predict() called before fit()")
        t = (self._matrix(events) @ self.w - self.c) / self.s
        return 1.0 / (1.0 + np.exp(-t))


__all__ = ["SMALL_COUNTS", "FisherClassifier", "small_events", "small_training_data"]
