"""Built-in classifier: a gradient-boosted decision tree (xgboost, ``hist`` trees).

Trained on ``data.train`` with class-balanced weights (signal and background
each get half of the total weight, so the tiny signal yield is not ignored),
early-stopped on a random validation split of ``train``.  Optionally the
training part is augmented with copies shifted by nuisance parameters drawn
from the priors, so the score is less sensitive to the systematics it will be
profiled against.  ``predict`` returns the signal probability in [0, 1].

The classifier is a :class:`~workbench.plugin.protocols.TreeClassifier` and a
:class:`~workbench.plugin.protocols.FeatureClassifier` (its ``booster`` and
``features`` are what the adversarial diagnostic reads).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench import (
    FEATURES,
    NP_NAMES,
    Events,
    NuisanceParameters,
    TrainingData,
    draw_nuisances,
    hookimpl,
    resolve_params,
)


def balanced_weights(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-event training weights: each class sums to half the number of events.

    Keeping the mean weight at one keeps xgboost's ``min_child_weight`` (a
    hessian sum) meaningful whatever the physical normalisation.
    """
    out = np.asarray(weights, dtype=np.float64).copy()
    n = len(out)
    for cls in (0, 1):
        sel = labels == cls
        total = out[sel].sum()
        if not sel.any() or total <= 0:
            raise ValueError(
                f"xgboost classifier: the training sample has no {'signal' if cls else 'background'}"
                " events with positive weight (column 'labels'/'weights')"
            )
        out[sel] *= 0.5 * n / total
    return out


@dataclass
class XGBoostParams:
    """Parameters of the "xgboost" classifier."""

    n_estimators: int = 200
    """Boosting rounds at most (>= 1; early-stopped)."""
    max_depth: int = 6
    """Tree depth."""
    learning_rate: float = 0.1
    """xgboost eta."""
    features: tuple[str, ...] | None = None
    """The features it reads (default: all 28)."""
    systematics_augmentation: bool = False
    """Add copies of the training part shifted by NPs drawn from the priors."""
    augmentation_copies: int = 2
    """How many (>= 0)."""
    n_jobs: int | None = None
    """Threads (``None``: xgboost's default)."""
    early_stopping_rounds: int = 20
    """Rounds without improvement on the validation split (0: no early stopping)."""
    validation_fraction: float = 0.2
    """Part of ``train`` held out for early stopping, in (0, 1)."""
    subsample: float = 1.0
    """Row subsampling per tree."""
    min_child_weight: float = 1.0
    """Minimum hessian sum per leaf."""
    max_bin: int = 256
    """Histogram bins per feature."""

    def __post_init__(self) -> None:
        features = tuple(self.features) if self.features is not None else FEATURES
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; valid: {', '.join(FEATURES)}")
        if not features:
            raise ValueError("'features' is empty")
        if int(self.n_estimators) < 1:
            raise ValueError(f"n_estimators={self.n_estimators} must be >= 1")
        if not 0.0 < float(self.validation_fraction) < 1.0:
            raise ValueError(f"validation_fraction={self.validation_fraction} must be in (0, 1)")
        if int(self.augmentation_copies) < 0:
            raise ValueError(f"augmentation_copies={self.augmentation_copies} must be >= 0")


class XGBoostClassifier:
    """Gradient-boosted trees (xgboost hist) on the 28 features; class-balanced, early-stopped."""

    def __init__(self, params: XGBoostParams | None = None, /, **overrides: Any) -> None:
        p = resolve_params(XGBoostParams, params, overrides, "xgboost classifier")
        self.params = p
        self.features = tuple(p.features) if p.features is not None else FEATURES
        self.n_estimators = int(p.n_estimators)
        self.max_depth = int(p.max_depth)
        self.learning_rate = float(p.learning_rate)
        self.systematics_augmentation = bool(p.systematics_augmentation)
        self.augmentation_copies = int(p.augmentation_copies)
        self.n_jobs = p.n_jobs
        self.early_stopping_rounds = int(p.early_stopping_rounds)
        self.validation_fraction = float(p.validation_fraction)
        self.subsample = float(p.subsample)
        self.min_child_weight = float(p.min_child_weight)
        self.max_bin = int(p.max_bin)
        self.booster = None
        self._fit_pid = os.getpid()  # see predict()
        self.info: dict = {}

    # -- training -------------------------------------------------------------
    def _augment(self, train: Events, data: TrainingData) -> list[Events]:
        """Copies of ``train`` shifted by NPs drawn from the priors (randomised NPs only)."""
        rng = np.random.RandomState(data.seed % (2**32))
        # NPs that are not randomised stay where the PEs have them (data.fixed).
        nominal = getattr(data, "fixed", None) or NuisanceParameters()
        fixed = {n: getattr(nominal, n) for n in NP_NAMES if n not in data.randomised}
        copies = []
        for k in range(self.augmentation_copies):
            nps = draw_nuisances(rng, tuple(data.randomised), dict(data.priors))
            nps = nps.replace(**fixed)
            copies.append(data.apply_systematics(train, nps, int(rng.randint(2**31 - 1))))
        return copies

    def training_set(self, data: TrainingData) -> tuple[Events, Events]:
        """(training part incl. augmented copies, validation part) of ``data.train``."""
        train = data.train
        if not train.is_labelled:
            raise ValueError("xgboost classifier: data.train has no 'labels'/'process' column")
        n = len(train)
        rng = np.random.RandomState((data.seed + 1) % (2**32))
        is_val = np.zeros(n, dtype=bool)
        is_val[rng.permutation(n)[: max(1, int(round(self.validation_fraction * n)))]] = True
        fit_part, val_part = train[~is_val], train[is_val]
        if self.systematics_augmentation and self.augmentation_copies > 0:
            fit_part = Events.concatenate([fit_part, *self._augment(fit_part, data)])
        return fit_part, val_part

    def fit(self, data: TrainingData) -> None:
        import xgboost as xgb

        t0 = time.perf_counter()
        fit_part, val_part = self.training_set(data)
        dtrain = xgb.DMatrix(
            fit_part.feature_matrix(self.features),
            label=fit_part.labels,
            weight=balanced_weights(fit_part.labels, fit_part.weights),
            feature_names=list(self.features),
        )
        dval = xgb.DMatrix(
            val_part.feature_matrix(self.features),
            label=val_part.labels,
            weight=balanced_weights(val_part.labels, val_part.weights),
            feature_names=list(self.features),
        )
        params = {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "min_child_weight": self.min_child_weight,
            "max_bin": self.max_bin,
            "seed": int(data.seed % (2**31)),
        }
        if self.n_jobs is not None:
            params["nthread"] = int(self.n_jobs)
        evals_result: dict = {}
        self.booster = xgb.train(
            params,
            dtrain,
            num_boost_round=self.n_estimators,
            evals=[(dval, "validation")],
            early_stopping_rounds=self.early_stopping_rounds or None,
            evals_result=evals_result,
            verbose_eval=False,
        )
        self._fit_pid = os.getpid()
        best = getattr(self.booster, "best_iteration", None)
        if best is not None:
            # Keep only the trees up to the early-stopping optimum: smaller and faster.
            self.booster = self.booster[: best + 1]
        self.info = {
            "n_train": dtrain.num_row(),
            "n_validation": dval.num_row(),
            "n_trees": self.booster.num_boosted_rounds(),
            "validation_logloss": float(evals_result["validation"]["logloss"][
                (best if best is not None else -1)]),
            "fit_seconds": time.perf_counter() - t0,
        }

    # -- inference ------------------------------------------------------------
    def predict(self, events: Events) -> np.ndarray:
        """Signal probability per event (float32), in-place prediction on the feature matrix."""
        if self.booster is None:
            raise RuntimeError("xgboost classifier: predict() called before fit()")
        if len(events) == 0:
            return np.zeros(0, dtype=np.float32)
        X = events.feature_matrix(self.features)
        if os.getpid() != self._fit_pid:
            # In a forked worker (executor "processes"): GNU OpenMP's thread pool
            # does not survive fork(), and a multi-threaded prediction in the child
            # of a parent that already ran OpenMP threads waits forever for them.
            # One thread per worker; the pool provides the parallelism.
            self.booster.set_param({"nthread": 1})
            self._fit_pid = os.getpid()
        return np.asarray(self.booster.inplace_predict(X, validate_features=False),
                          dtype=np.float32)


@hookimpl
def register_classifiers(register):
    register("xgboost", XGBoostClassifier, params=XGBoostParams)
