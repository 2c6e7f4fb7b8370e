"""Interval strategy "calibrated": a Neyman belt around any point estimator.

At fit time the inner strategy (any registered interval strategy, built through
the run's registry, ``data.registry``) is trained, then for a grid of mu values PEs are simulated with
the NPs drawn from their priors and the inner estimator ``t`` (its mu_hat, or the
midpoint of its interval) recorded.  Per grid point the central ``CL``
acceptance region ``[t_lo(mu), t_hi(mu)]`` (the (1-CL)/2 and (1+CL)/2 quantiles)
is estimated, made non-decreasing in mu (isotonic regression) and interpolated
linearly between grid points: the belt.  An observed ``t`` is inverted into
``{mu : t_lo(mu) <= t <= t_hi(mu)}``, which covers the true mu with probability CL
for every mu in the grid range, whatever the estimator's bias or spread, as long
as the simulation matches the data (the NPs are *marginalised* over their
priors, so coverage holds on average over the NP prior, as in the challenge).

Simulation: an inner strategy that is a
:class:`~workbench.plugin.protocols.SimulatedStatistic` (``simulate_statistic(mu,
seed, mc_noise)``; the aggregated-feature strategies: cheap cell-bank PEs) is
used directly; any other
is run on full PEs from ``data.sample_pseudo_experiment`` (slow: ``n_grid x
n_toys`` full inferences, keep ``n_toys`` small).  The belt is kept in the
object and can be written/read with ``save(path)`` / ``load(path)`` (JSON).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from workbench import (
    Classifier,
    Events,
    IntervalResult,
    SimulatedStatistic,
    Templates,
    TrainingData,
    derive_seed,
    draw_nuisances,
    hookimpl,
    resolve_params,
)
from workbench.plugin.registry import get_registry
from workbench.toolkit.aggregate import check_tweaks, post_process, tweak_info

STATISTICS = ("mu_hat", "midpoint")


def isotonic(y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Non-decreasing least-squares fit (pool-adjacent-violators)."""
    y = np.asarray(y, float)
    w = np.ones_like(y) if w is None else np.asarray(w, float)
    vals, wts, sizes = [], [], []
    for yi, wi in zip(y, w):
        vals.append(yi), wts.append(wi), sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v2, w2, s2 = vals.pop(), wts.pop(), sizes.pop()
            v1, w1, s1 = vals.pop(), wts.pop(), sizes.pop()
            vals.append((v1 * w1 + v2 * w2) / (w1 + w2)), wts.append(w1 + w2), sizes.append(s1 + s2)
    return np.repeat(vals, sizes)


class NeymanBelt:
    """Central acceptance belt of a statistic over a mu grid, and its inversion."""

    def __init__(self, mu: np.ndarray, lower: np.ndarray, median: np.ndarray,
                 upper: np.ndarray, cl: float = 0.6827, n_toys: int | None = None) -> None:
        self.mu = np.asarray(mu, float)
        if np.any(np.diff(self.mu) <= 0):
            raise ValueError("Neyman belt: the mu grid must be strictly increasing")
        self.lower, self.median, self.upper = (np.asarray(a, float) for a in (lower, median, upper))
        self.cl = float(cl)
        self.n_toys = n_toys

    @classmethod
    def from_toys(cls, mu: np.ndarray, stats: np.ndarray, cl: float = 0.6827,
                  monotone: bool = True) -> "NeymanBelt":
        """``stats[i, j]``: statistic of toy j at ``mu[i]``."""
        stats = np.asarray(stats, float)
        a = 0.5 * (1.0 - cl)
        lo, med, hi = np.quantile(stats, [a, 0.5, 1.0 - a], axis=1)
        if monotone:
            lo, med, hi = isotonic(lo), isotonic(med), isotonic(hi)
        return cls(mu, lo, med, hi, cl, stats.shape[1])

    @staticmethod
    def _invert(t: np.ndarray, edge: np.ndarray, mu: np.ndarray) -> np.ndarray:
        # strictly increasing copy of a non-decreasing edge for np.interp
        eps = 1e-12 * (1.0 + np.abs(edge).max()) * np.arange(len(edge))
        return np.interp(t, edge + eps, mu)

    def interval(self, t) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mu_hat, mu16, mu84) for observed statistic(s) ``t``; ends limited to the grid.

        mu16 is where the upper belt edge reaches t, mu84 where the lower edge does;
        mu_hat where the median does (median-unbiased)."""
        t = np.atleast_1d(np.asarray(t, float))
        mu16 = self._invert(t, self.upper, self.mu)
        mu84 = self._invert(t, self.lower, self.mu)
        mu_hat = np.clip(self._invert(t, self.median, self.mu), mu16, np.maximum(mu16, mu84))
        mu84 = np.maximum(mu16, mu84)
        return mu_hat, mu16, mu84

    def as_dict(self) -> dict[str, Any]:
        return {"mu": self.mu.tolist(), "lower": self.lower.tolist(),
                "median": self.median.tolist(), "upper": self.upper.tolist(),
                "confidence_level": self.cl, "n_toys": self.n_toys}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "NeymanBelt":
        try:
            d = json.loads(Path(path).read_text())
            return cls(d["mu"], d["lower"], d["median"], d["upper"], d["confidence_level"],
                       d.get("n_toys"))
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"cannot read a Neyman belt from {path}: {exc}") from exc


@dataclass
class CalibratedParams:
    """Parameters of the "calibrated" strategy."""

    inner: str = "quantile-regression"
    """The inner interval strategy (any registered one but "calibrated")."""
    inner_params: dict[str, Any] | None = None
    """Its parameters."""
    statistic: Literal["mu_hat", "midpoint"] = "mu_hat"
    """The inner estimator the belt is made of: its mu_hat or its interval's midpoint."""
    n_grid: int = 30
    """mu grid points of the belt (>= 3)."""
    n_toys: int = 400
    """Simulated PEs per grid point (>= 10)."""
    mu_grid_range: tuple[float, float] | None = None
    """Range of the mu grid (default: the spec's mu range)."""
    belt_path: str | None = None
    """Where to write the belt (JSON) after fitting."""
    mc_noise: float | None = 1.0
    """MC-statistics noise of the cell-bank toys (``None``: the inner strategy's own)."""
    inflation: float = 1.0
    """Interval inflation about mu_hat (1: none)."""
    clip_to_range: bool = False
    """Clip intervals into the spec's mu range."""

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic {self.statistic!r} is not one of "
                             f"{', '.join(STATISTICS)}")
        if self.n_grid < 3 or self.n_toys < 10:
            raise ValueError(f"n_grid={self.n_grid} (>= 3) and n_toys={self.n_toys} (>= 10) "
                             "are too small")
        check_tweaks(self.inflation)
        if self.inner == "calibrated":
            raise ValueError("the inner strategy cannot be 'calibrated' itself")
        if self.mc_noise is not None and self.mc_noise < 0:
            raise ValueError(f"mc_noise={self.mc_noise} must be >= 0")


class CalibratedInterval:
    """Neyman-belt calibration of an inner strategy's estimator (correct frequentist coverage)."""

    def __init__(self, params: CalibratedParams | None = None, /, **overrides: Any) -> None:
        p = resolve_params(CalibratedParams, params, overrides, "calibrated")
        self.params = p
        self.inner_name, self.inner_params = p.inner, dict(p.inner_params or {})
        self.statistic = p.statistic
        self.mc_noise = p.mc_noise
        self.n_grid, self.n_toys = int(p.n_grid), int(p.n_toys)
        self.mu_grid_range = p.mu_grid_range
        self.belt_path = p.belt_path
        self.inflation, self.clip_to_range = float(p.inflation), bool(p.clip_to_range)
        self.inner = None
        self.belt: NeymanBelt | None = None
        self.clip_range = None
        self.fit_info: dict[str, Any] = {}

    def _stat(self, r: IntervalResult) -> float:
        return r.mu_hat if self.statistic == "mu_hat" else 0.5 * (r.mu16 + r.mu84)

    def fit(self, data: TrainingData, classifier: Classifier | None,
            templates: Templates | None) -> None:
        registry = data.registry if data.registry is not None else get_registry()
        self.inner = registry.create("interval", self.inner_name, self.inner_params)
        self.inner.fit(data, classifier, templates)
        self.clip_range = tuple(data.mu_range) if self.clip_to_range else None
        lo, hi = self.mu_grid_range if self.mu_grid_range is not None else data.mu_range
        grid = np.linspace(float(lo), float(hi), self.n_grid)
        seed = derive_seed(data.seed, "neyman-belt")
        t0 = time.perf_counter()
        fast = isinstance(self.inner, SimulatedStatistic) and self.statistic == "mu_hat"
        if fast:
            mus = np.repeat(grid, self.n_toys)
            # the inner model was trained on this bank: the belt toys get MC-statistics
            # noise (mc_noise x the bank's MC variance) so they are not easier than real PEs
            stats = self.inner.simulate_statistic(mus, seed, self.mc_noise).reshape(
                self.n_grid, self.n_toys)
        else:
            stats = np.empty((self.n_grid, self.n_toys))
            for i, mu in enumerate(grid):
                for j in range(self.n_toys):
                    s = derive_seed(seed, i, j)
                    nps = draw_nuisances(np.random.RandomState(s), data.randomised, data.priors)
                    nps = nps.replace(**{n: getattr(data.fixed, n) for n in nps.as_dict()
                                         if n not in data.randomised})
                    pe = data.sample_pseudo_experiment(float(mu), nps, s)
                    stats[i, j] = self._stat(self.inner.predict(pe.without_truth()))
        self.belt = NeymanBelt.from_toys(grid, stats, data.confidence_level)
        self.fit_info = {"belt_seconds": time.perf_counter() - t0,
                         "simulation": "cell-bank" if fast else "full-pes",
                         "n_grid": self.n_grid, "n_toys": self.n_toys, "mc_noise": self.mc_noise}
        if self.belt_path:
            self.belt.save(self.belt_path)

    def save(self, path: str | Path) -> None:
        if self.belt is None:
            raise RuntimeError("calibrated: save() called before fit()")
        self.belt.save(path)

    def load(self, path: str | Path) -> None:
        """Replace the belt by a saved one (the inner strategy must still be fitted)."""
        self.belt = NeymanBelt.load(path)

    def predict_features(self, X: np.ndarray):
        """Vectorised path for inner strategies on aggregated features."""
        mu_hat, lo, hi, _ = self.inner.predict_features(X)
        return self._from_statistic(mu_hat if self.statistic == "mu_hat" else 0.5 * (lo + hi))

    def _from_statistic(self, t):
        mu_hat, lo, hi = self.belt.interval(t)
        mu_hat, lo, hi = post_process(mu_hat, lo, hi, self.inflation, self.clip_range)
        infos = [{"method": "calibrated", "inner": self.inner_name, "statistic": float(v),
                  "raw_interval": [float(a), float(b)]}
                 for v, a, b in zip(np.atleast_1d(t), lo, hi)]
        return mu_hat, lo, hi, infos

    def predict(self, events: Events) -> IntervalResult:
        if self.belt is None:
            raise RuntimeError("calibrated: predict() called before fit()")
        t0 = time.perf_counter()
        r = self.inner.predict(events)
        mu_hat, lo, hi, infos = self._from_statistic(self._stat(r))
        info = {**infos[0], **tweak_info(self.inflation, self.clip_range),
                "inner_interval": [r.mu16, r.mu_hat, r.mu84],
                "timings": {"total": time.perf_counter() - t0}}
        return IntervalResult(mu_hat=mu_hat[0], mu16=lo[0], mu84=hi[0], info=info)


@hookimpl
def register_intervals(register):
    register("calibrated", CalibratedInterval, params=CalibratedParams)
