"""Interval strategies "bin-classifier" and "hybrid".

``bin-classifier``: a multi-class xgboost (``multi:softprob``) learns which of
``n_mu_bins`` equal bins of the training range a simulated PE's mu falls in,
from the same aggregated features as "quantile-regression" (see
:mod:`workbench.toolkit.aggregate` for the cheap cell-bank simulation).  The class probabilities are a posterior under
the training prior with a piecewise-constant density; the interval is the
narrowest region holding ``confidence_level`` of it (:func:`narrowest_interval`)
and mu_hat its median.  Near the range edges, where a quantile regressor has to
extrapolate a truncated posterior, the class probabilities stay well defined.

``hybrid``: both models on one simulated training set; the bin classifier's
interval when the regressor's mu_hat is within ``edge_threshold`` of an edge of
the training range, the regressor's inside.  The regressor is the toolkit's
(:class:`workbench.toolkit.aggregate.QuantileRegression`, the model of
"quantile-regression" with its default settings).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench import Classifier, Templates, TrainingData, hookimpl, resolve_params
from workbench.toolkit.aggregate import (
    AggregateParams,
    AggregateStrategy,
    QuantileRegression,
    post_process,
)


def narrowest_interval(probs: np.ndarray, edges: np.ndarray, cl: float = 0.6827):
    """Narrowest interval of mass ``cl`` under a piecewise-constant density.

    The highest-density set of bins that reaches ``cl`` is taken, then its hull
    [first, last selected bin] is shrunk to mass exactly ``cl`` by trimming the
    excess from its ends, always from the end of lower density (each unit of
    mass removed there saves the most width), within bins by linear
    interpolation.  A single selected bin gives a centred sub-interval.
    Returns ``(low, high)``.
    """
    p = np.clip(np.asarray(probs, float), 0, None)
    edges = np.asarray(edges, float)
    if p.sum() <= 0:
        raise ValueError("narrowest_interval: all probabilities are zero")
    p = p / p.sum()
    widths = np.diff(edges)
    density = p / widths
    order = np.argsort(-density, kind="stable")
    k = int(np.searchsorted(np.cumsum(p[order]), cl - 1e-12)) + 1
    sel = order[:min(k, len(p))]
    a, b = int(sel.min()), int(sel.max())
    if a == b:
        half = 0.5 * widths[a] * min(cl / p[a], 1.0)
        centre = 0.5 * (edges[a] + edges[a + 1])
        return centre - half, centre + half
    excess = p[a:b + 1].sum() - cl
    lo, hi = edges[a], edges[b + 1]
    lo_used = hi_used = 0.0  # mass already trimmed from bin a / bin b
    while excess > 1e-15 and a < b:
        if density[a] <= density[b]:
            take = min(excess, p[a] - lo_used)
            lo_used += take
            lo = edges[a] + lo_used / density[a]
            if p[a] - lo_used <= 1e-15:
                a, lo_used = a + 1, 0.0
                lo = edges[a]
        else:
            take = min(excess, p[b] - hi_used)
            hi_used += take
            hi = edges[b + 1] - hi_used / density[b]
            if p[b] - hi_used <= 1e-15:
                b, hi_used = b - 1, 0.0
                hi = edges[b + 1]
        excess -= take
    if excess > 1e-15:  # down to one bin: centre the rest inside it
        remaining = p[a] - lo_used - hi_used
        width = (remaining - excess) / density[a]
        centre = 0.5 * (lo + hi)
        lo, hi = centre - 0.5 * width, centre + 0.5 * width
    return float(lo), float(hi)


def posterior_median(probs: np.ndarray, edges: np.ndarray) -> float:
    p = np.asarray(probs, float) / np.sum(probs)
    cdf = np.concatenate([[0.0], np.cumsum(p)])
    return float(np.interp(0.5, cdf, edges))


class MuBinClassifier:
    """Multi-class xgboost over equal mu bins; ``predict_proba(X) -> (n, n_bins)``.

    Boosted class probabilities are over-confident; with ``temperature=True`` they
    are calibrated by temperature scaling (``p_k^(1/T)``, renormalised; T fitted by
    minimum log-loss on a held-out split of the simulated PEs)."""

    def __init__(self, edges: np.ndarray, n_estimators: int = 300, max_depth: int = 4,
                 learning_rate: float = 0.1, early_stopping_rounds: int = 20,
                 validation_fraction: float = 0.2, n_jobs: int | None = None,
                 seed: int = 0, temperature: bool = True,
                 calibration_fraction: float = 0.2) -> None:
        self.use_temperature = temperature
        self.calibration_fraction = calibration_fraction
        self.temperature = 1.0
        self.edges = np.asarray(edges, float)
        self.params = dict(n_estimators=n_estimators, max_depth=max_depth,
                           learning_rate=learning_rate, early_stopping_rounds=early_stopping_rounds,
                           validation_fraction=validation_fraction, n_jobs=n_jobs)
        self.seed = seed
        self.booster = None

    def fit(self, X: np.ndarray, mu: np.ndarray) -> "MuBinClassifier":
        import xgboost as xgb

        p = self.params
        n_class = len(self.edges) - 1
        y = np.clip(np.searchsorted(self.edges, mu, side="right") - 1, 0, n_class - 1)
        perm = np.random.default_rng(self.seed).permutation(len(y))
        n_val = int(p["validation_fraction"] * len(y)) if p["early_stopping_rounds"] else 0
        n_cal = int(self.calibration_fraction * len(y)) if self.use_temperature else 0
        cal, val, tr = perm[:n_cal], perm[n_cal:n_cal + n_val], perm[n_cal + n_val:]
        params = {"objective": "multi:softprob", "num_class": n_class, "tree_method": "hist",
                  "max_depth": p["max_depth"], "eta": p["learning_rate"], "seed": self.seed,
                  "nthread": p["n_jobs"] or 0, "eval_metric": "mlogloss"}
        X = np.asarray(X, np.float32)
        evals = [(xgb.DMatrix(X[val], label=y[val]), "validation")] if n_val else []
        self.booster = xgb.train(params, xgb.DMatrix(X[tr], label=y[tr]),
                                 num_boost_round=p["n_estimators"], evals=evals,
                                 early_stopping_rounds=p["early_stopping_rounds"] or None,
                                 verbose_eval=False)
        if n_val and self.booster.best_iteration is not None:
            self.booster = self.booster[: self.booster.best_iteration + 1]
        if n_cal:
            from scipy.optimize import minimize_scalar

            logp = np.log(np.clip(self._raw(X[cal]), 1e-12, None))
            yc = y[cal]

            def nll(log_t):
                z = logp / np.exp(log_t)
                z -= z.max(axis=1, keepdims=True)
                return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(yc)), yc]))

            self.temperature = float(np.exp(minimize_scalar(nll, bounds=(-2, 2),
                                                            method="bounded").x))
        return self

    def _raw(self, X: np.ndarray) -> np.ndarray:
        out = np.asarray(self.booster.inplace_predict(np.asarray(X, np.float32)), np.float64)
        return out.reshape(len(X), len(self.edges) - 1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("mu-bin classifier: predict_proba() called before fit()")
        p = self._raw(X)
        if self.temperature != 1.0:
            z = np.log(np.clip(p, 1e-12, None)) / self.temperature
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
        return p


@dataclass
class BinClassifierParams(AggregateParams):
    """The aggregated-feature parameters plus the mu-bin classifier's."""

    n_mu_bins: int = 15
    """Equal bins of the training mu range (classes, >= 2)."""
    n_estimators: int = 150
    """Boosting rounds at most (early-stopped)."""
    max_depth: int = 3
    """Tree depth."""
    learning_rate: float = 0.15
    """xgboost eta."""
    early_stopping_rounds: int = 15
    """Rounds without improvement on the validation split (0: no early stopping)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_mu_bins < 2:
            raise ValueError(f"n_mu_bins={self.n_mu_bins} must be >= 2")


@dataclass
class HybridParams(AggregateParams):
    """The aggregated-feature parameters plus the switch between the two models (both
    models keep their default settings)."""

    edge_threshold: float = 0.3
    """Distance of the regressor's mu_hat to an edge of the training range below which
    the bin classifier's interval is used."""
    n_mu_bins: int = 15
    """Equal bins of the training mu range of the bin classifier (>= 2)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.edge_threshold < 0:
            raise ValueError(f"edge_threshold={self.edge_threshold} must be >= 0")
        if self.n_mu_bins < 2:
            raise ValueError(f"n_mu_bins={self.n_mu_bins} must be >= 2")


class BinClassifierInterval(AggregateStrategy):
    """Multi-class classifier of mu bins; narrowest 68.27% region of the class probabilities."""

    def __init__(self, params: BinClassifierParams | None = None, /, **overrides: Any) -> None:
        p = resolve_params(BinClassifierParams, params, overrides, "bin-classifier")
        super().__init__(p)
        self.n_mu_bins = int(p.n_mu_bins)
        self.model_params = dict(n_estimators=p.n_estimators, max_depth=p.max_depth,
                                 learning_rate=p.learning_rate,
                                 early_stopping_rounds=p.early_stopping_rounds, n_jobs=p.n_jobs)
        self.model: MuBinClassifier | None = None
        self.cl = 0.6827

    def fit(self, data: TrainingData, classifier: Classifier | None,
            templates: Templates | None) -> None:
        self.cl = data.confidence_level
        super().fit(data, classifier, templates)

    def fit_arrays(self, X: np.ndarray, mu: np.ndarray, seed: int = 0) -> None:
        t0 = time.perf_counter()
        lo, hi = (self.mu_prior.low, self.mu_prior.high) if self.mu_prior else (mu.min(), mu.max())
        edges = np.linspace(lo, hi, self.n_mu_bins + 1)
        self.model = MuBinClassifier(edges, seed=seed % (2**31), **self.model_params).fit(X, mu)
        self.fit_info["classification_seconds"] = time.perf_counter() - t0
        self.fit_info["temperature"] = self.model.temperature

    def predict_features(self, X: np.ndarray):
        probs = self.model.predict_proba(X)
        edges = self.model.edges
        bounds = np.array([narrowest_interval(p, edges, self.cl) for p in probs])
        med = np.array([posterior_median(p, edges) for p in probs])
        mu_hat, lo, hi = post_process(med, bounds[:, 0], bounds[:, 1], self.inflation,
                                      self.clip_range)
        infos = [{"method": "bin-classifier", "raw_interval": [float(a), float(b)],
                  "max_bin_probability": float(p.max())} for (a, b), p in zip(bounds, probs)]
        return mu_hat, lo, hi, infos


class HybridInterval(AggregateStrategy):
    """Bin classifier near the edges of the mu range, quantile regression inside."""

    def __init__(self, params: HybridParams | None = None, /, **overrides: Any) -> None:
        p = resolve_params(HybridParams, params, overrides, "hybrid")
        super().__init__(p)
        self.edge_threshold = float(p.edge_threshold)
        # the sub-models keep their defaults; the tweaks apply once, to the combination
        shared = {f.name: getattr(p, f.name) for f in dataclasses.fields(AggregateParams)
                  if f.name not in ("inflation", "clip_to_range")}
        self.qr = QuantileRegression(n_jobs=p.n_jobs)
        self.bc = BinClassifierInterval(BinClassifierParams(n_mu_bins=p.n_mu_bins, **shared))

    def fit(self, data: TrainingData, classifier: Classifier | None,
            templates: Templates | None) -> None:
        X, mu = self.prepare(data, classifier)
        self.bc.bank, self.bc.classifier, self.bc.mu_prior = self.bank, classifier, self.mu_prior
        self.bc.fit_info = dict(self.fit_info)
        self.bc.cl = data.confidence_level
        self.fit_info["quantile_regression"] = self.qr.fit(X, mu, data.seed)
        self.bc.fit_arrays(X, mu, data.seed)

    def predict_features(self, X: np.ndarray):
        q = self.qr.quantiles(X)
        ql, qh, qu = q[:, 0], q[:, 1], q[:, 2]
        bh, bl, bu, bi = self.bc.predict_features(X)
        lo_r, hi_r = self.mu_prior.low, self.mu_prior.high
        edge = (qh < lo_r + self.edge_threshold) | (qh > hi_r - self.edge_threshold)
        mu_hat, lo, hi = (np.where(edge, b, q) for b, q in ((bh, qh), (bl, ql), (bu, qu)))
        mu_hat, lo, hi = post_process(mu_hat, lo, hi, self.inflation, self.clip_range)
        infos = [{"method": "hybrid", "used": "bin-classifier" if e else "quantile-regression",
                  "edge_threshold": self.edge_threshold,
                  "quantile_regression": [float(a), float(b), float(c)],
                  "bin_classifier": [float(d), float(e_), float(f)]}
                 for e, a, b, c, d, e_, f in zip(edge, ql, qh, qu, bl, bh, bu)]
        return mu_hat, lo, hi, infos


@hookimpl
def register_intervals(register):
    register("bin-classifier", BinClassifierInterval, params=BinClassifierParams)
    register("hybrid", HybridInterval, params=HybridParams)


__all__ = ["BinClassifierInterval", "BinClassifierParams", "HybridInterval", "HybridParams",
           "MuBinClassifier", "narrowest_interval", "posterior_median", "register_intervals"]
