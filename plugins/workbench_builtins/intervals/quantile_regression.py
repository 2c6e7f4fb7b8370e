"""Interval strategy "quantile-regression": gradient-boosted quantiles of mu from
per-pseudo-experiment aggregated features.

A pseudo-experiment is summarised by its aggregated features (the classifier-score
histogram, the total count, means and quantiles of key features) and xgboost
regresses the 15.865%, 50% and 84.135% quantiles of mu on them
(``reg:quantileerror``), learned from cheap simulated PEs with mu drawn from a
training prior and all NPs from their priors.  The features, the cell-bank
simulation and the regressor are in :mod:`workbench.toolkit.aggregate`, shared
with "bin-classifier" and "hybrid".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench import hookimpl, resolve_params
from workbench.toolkit.aggregate import (
    AggregateParams,
    AggregateStrategy,
    QuantileRegression,
    QuantileRegressor,
    QuantileRegressorParams,
    post_process,
)


@dataclass
class QuantileRegressionParams(QuantileRegressorParams, AggregateParams):
    """The aggregated-feature parameters plus the quantile regressor's."""


class QuantileRegressionInterval(AggregateStrategy):
    """Quantile regression (xgboost) of mu16 / mu_hat / mu84 on per-PE aggregated features."""

    def __init__(self, params: QuantileRegressionParams | None = None, /,
                 **overrides: Any) -> None:
        p = resolve_params(QuantileRegressionParams, params, overrides, "quantile-regression")
        super().__init__(p)
        self.model = QuantileRegression(p, p.n_jobs)

    @property
    def regressor(self) -> QuantileRegressor | None:
        """The fitted xgboost regressor (``None`` before ``fit``)."""
        return self.model.regressor

    def fit_arrays(self, X: np.ndarray, mu: np.ndarray, seed: int = 0) -> None:
        self.fit_info.update(self.model.fit(X, mu, seed))

    def predict_features(self, X: np.ndarray):
        """Vectorised (mu_hat, mu16, mu84, infos) for a feature matrix."""
        q = self.model.quantiles(X)
        mu_hat, lo, hi = post_process(q[:, 1], q[:, 0], q[:, 2], self.inflation, self.clip_range)
        infos = [{"method": "quantile-regression", "raw_interval": [float(a), float(c)]}
                 for a, c in zip(q[:, 0], q[:, 2])]
        return mu_hat, lo, hi, infos


@hookimpl
def register_intervals(register):
    register("quantile-regression", QuantileRegressionInterval, params=QuantileRegressionParams)


__all__ = ["QuantileRegressionInterval", "QuantileRegressionParams", "register_intervals"]
