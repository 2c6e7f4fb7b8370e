"""Aggregated-feature interval strategies: simulated PEs from a cell bank, and the models.

Shared by the interval strategies "quantile-regression", "bin-classifier",
"hybrid" (and, through them, "calibrated" and the "prior-dependence"
diagnostic): a pseudo-experiment (PE) is summarised by a few numbers -- the
histogram of the classifier score, the total count and the means and quantiles
of a few key features (``DER_mass_vis``, ``PRI_had_pt``, ``PRI_met``: ``tes``
moves the tau pT, ``soft_met`` the MET, so they act as fitted-NP proxies) --
and a model learns mu from them on simulated PEs with mu drawn from a training
prior (:class:`MuPrior`) and all NPs from their priors.  The xgboost
multi-quantile regressor (:class:`QuantileRegressor`, ``reg:quantileerror``)
is here too: "quantile-regression" is it, "hybrid" uses it next to the bin
classifier.

Cheap simulated PEs (a full PE is ~1M events).  Every aggregated feature here
is a function of the *marginal histograms* of a PE over a fixed binning (score
bins x key-feature bins; the means and quantiles are read off the binned
distribution with per-bin mean values and linear interpolation inside a bin),
and the same function is used for training and prediction.  The holdout is
therefore reduced once per shape-NP setting to expected counts per *joint* cell
(score bin x feature bins, per process): since a sum of Poisson variables is
Poisson, drawing ``Poisson(sum_p norm_p lambda_pc)`` per occupied cell is exactly
the distribution of the binned counts of a PE drawn event by event from the same
(shifted) holdout, at the cost of ~10^4 Poisson draws instead of ~10^6 events
through the systematics and the classifier.  Approximations: (1) the shape NPs
(tes, jes, soft_met) take ``n_settings`` Latin-hypercube values of their priors,
each with one fixed soft-MET smearing, instead of a continuum (weight NPs and mu
are continuous: they only rescale the per-process cell expectations); (2) the
cell expectations come from a holdout subsample of at most
``max_events_per_process`` events per process (its MC statistics are common to
all training PEs).  The bank is cached per (holdout, classifier, settings), so
strategies sharing it (hybrid, calibration, prior-dependence retraining) pay
for it once.

The strategies' shared parameters are :class:`AggregateParams` (a strategy's
own parameter dataclass inherits them) and their shared plumbing is
:class:`AggregateStrategy`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.special import ndtri

from workbench.data.events import Events
from workbench.data.schema import FEATURES, PROCESSES, SIGNAL
from workbench.plugin.protocols import Classifier, IntervalResult, Templates, TrainingData
from workbench.seeds import derive_seed
from workbench.systematics.nuisance import SHAPE_NPS, WEIGHT_NPS, NuisanceParameters, Prior
from workbench.toolkit.nominal import nominal_nuisances

QUANTILES = (0.15865, 0.5, 0.84135)
MU_PRIORS = ("uniform", "log-uniform", "normal")
DEFAULT_FEATURES = ("DER_mass_vis", "PRI_had_pt", "PRI_met")


# -- priors ----------------------------------------------------------------------
def prior_ppf(prior: Prior, u: np.ndarray) -> np.ndarray:
    """Inverse CDF of a clipped NP prior (clipping maps the tails onto the bounds)."""
    z = ndtri(np.clip(u, 1e-12, 1 - 1e-12))
    if prior.kind == "normal":
        x = prior.loc + prior.scale * z
    elif prior.kind == "lognormal":
        x = np.exp(prior.loc + prior.scale * z)
    else:
        raise ValueError(f"prior kind {prior.kind!r} is not supported (normal, lognormal)")
    return np.clip(x, prior.low, prior.high)


def draw_prior(prior: Prior, n: int, rng: np.random.Generator) -> np.ndarray:
    return prior_ppf(prior, rng.uniform(size=n))


@dataclass(frozen=True)
class MuPrior:
    """Training prior of mu over [low, high]: uniform, log-uniform or a normal
    truncated to the range (inverse-CDF sampling, no pile-up at the bounds)."""

    kind: str = "uniform"
    low: float = 0.1
    high: float = 3.0
    loc: float = 1.0
    scale: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in MU_PRIORS:
            raise ValueError(f"mu_prior {self.kind!r} is not one of {', '.join(MU_PRIORS)}")
        if not self.high > self.low:
            raise ValueError(f"mu training range [{self.low}, {self.high}] is empty")
        if self.kind == "log-uniform" and self.low <= 0:
            raise ValueError(f"mu_prior 'log-uniform' needs a positive lower bound, got {self.low}")
        if self.kind == "normal" and not self.scale > 0:
            raise ValueError(f"mu_prior 'normal' needs mu_prior_scale > 0, got {self.scale}")

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.uniform(size=n)
        if self.kind == "uniform":
            return self.low + (self.high - self.low) * u
        if self.kind == "log-uniform":
            return self.low * (self.high / self.low) ** u
        from scipy.stats import norm

        a, b = norm.cdf([(self.low - self.loc) / self.scale, (self.high - self.loc) / self.scale])
        return np.clip(self.loc + self.scale * ndtri(a + (b - a) * u), self.low, self.high)

    def as_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind, "low": self.low, "high": self.high}
        if self.kind == "normal":
            d.update(loc=self.loc, scale=self.scale)
        return d


def mu_prior_from(data: TrainingData, kind: str, mu_range, loc: float, scale: float) -> MuPrior:
    lo, hi = mu_range if mu_range is not None else data.mu_range
    return MuPrior(kind, float(lo), float(hi), float(loc), float(scale))


def process_norm_matrix(mu: np.ndarray, weight_nps: dict[str, np.ndarray]) -> np.ndarray:
    """Per-PE Poisson-mean multipliers per process code, shape (n, n_processes): mu for
    the signal, the weight-scale NPs for the backgrounds (vectorised over PEs)."""
    mu = np.asarray(mu, float)
    bkg = weight_nps["bkg_scale"]
    cols = {SIGNAL: mu, "ztautau": bkg, "ttbar": weight_nps["ttbar_scale"] * bkg,
            "diboson": weight_nps["diboson_scale"] * bkg}
    return np.stack([np.broadcast_to(cols[p], mu.shape) for p in PROCESSES], axis=1)


def draw_weight_nps(data: TrainingData, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weight-scale NPs per PE: randomised ones from their priors, the others fixed."""
    out = {}
    for name in WEIGHT_NPS:
        if name in data.randomised:
            out[name] = draw_prior(data.priors[name], n, rng)
        else:
            out[name] = np.full(n, float(getattr(data.fixed, name)))
    return out


def shape_settings(data: TrainingData, n_settings: int, seed: int) -> list[NuisanceParameters]:
    """Latin-hypercube points of the randomised shape NPs (weight NPs at 1)."""
    rng = np.random.default_rng(seed)
    varied = [n for n in SHAPE_NPS if n in data.randomised]
    base = {n: float(getattr(data.fixed, n)) for n in SHAPE_NPS}
    k = n_settings if varied else 1
    columns = {}
    for name in varied:
        u = (rng.permutation(k) + rng.uniform(size=k)) / k
        columns[name] = prior_ppf(data.priors[name], u)
    return [NuisanceParameters(**{**base, **{n: float(c[i]) for n, c in columns.items()}})
            for i in range(k)]


# -- aggregated features -------------------------------------------------------------
def _weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(qs, cdf, x)


@dataclass
class AggregateDefinition:
    """The binning and the per-PE features computed from a PE's marginal histograms.

    Axis 0 is the classifier score (equal expected signal per bin), the others the
    key features (equal expected total per bin).  Values outside the inner edges
    fall into the outer bins.
    """

    features: tuple[str, ...]
    inner_edges: list[np.ndarray]
    """Per axis the inner bin edges (``len = nbins - 1``)."""
    bounds: list[np.ndarray]
    """Per key-feature axis all bin boundaries (outer ones at the 0.1/99.9% quantiles)."""
    values: list[np.ndarray]
    """Per key-feature axis the nominal mean value in each bin."""
    quantiles: tuple[float, ...]

    @property
    def nbins(self) -> list[int]:
        return [len(e) + 1 for e in self.inner_edges]

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.nbins)])

    @property
    def names(self) -> list[str]:
        names = [f"score_bin{i}" for i in range(self.nbins[0])] + ["log_total"]
        for f in self.features:
            names += [f"{f}_mean"] + [f"{f}_q{q:g}" for q in self.quantiles]
        return names

    @classmethod
    def build(cls, scores: np.ndarray, events: Events, signal: np.ndarray,
              features: Sequence[str], score_bins: int, feature_bins: int,
              quantiles: Sequence[float]) -> "AggregateDefinition":
        """Edges from a nominal weighted sample (``signal`` marks signal rows)."""
        w = events.weights
        qs = np.linspace(0, 1, score_bins + 1)[1:-1]
        edges = [np.unique(_weighted_quantiles(scores[signal], w[signal], qs))]
        bounds, values = [], []
        for name in features:
            x = events[name].astype(np.float64)
            q = _weighted_quantiles(x, w, np.linspace(0, 1, feature_bins + 1))
            lo, hi = _weighted_quantiles(x, w, np.array([1e-3, 1 - 1e-3]))
            inner = np.unique(q[1:-1])
            edges.append(inner)
            b = np.concatenate([[min(lo, inner[0])], inner, [max(hi, inner[-1])]])
            idx = np.searchsorted(inner, x, side="right")
            sw = np.bincount(idx, weights=w, minlength=len(inner) + 1)
            sx = np.bincount(idx, weights=w * x, minlength=len(inner) + 1)
            mids = 0.5 * (b[:-1] + b[1:])
            values.append(np.where(sw > 0, sx / np.maximum(sw, 1e-300), mids))
            bounds.append(b)
        return cls(tuple(features), edges, bounds, values, tuple(float(q) for q in quantiles))

    def indices(self, scores: np.ndarray, events: Events) -> list[np.ndarray]:
        """Per-axis bin index of every event."""
        cols = [np.asarray(scores, np.float64)] + [events[f].astype(np.float64)
                                                   for f in self.features]
        return [np.searchsorted(e, c, side="right").astype(np.int64)
                for e, c in zip(self.inner_edges, cols)]

    def marginals(self, scores: np.ndarray, events: Events) -> np.ndarray:
        """Concatenated marginal histograms (counts) of one PE, shape (1, sum nbins)."""
        w = events.weights if "weights" in events else None
        parts = [np.bincount(i, weights=w, minlength=n)
                 for i, n in zip(self.indices(scores, events), self.nbins)]
        return np.concatenate(parts)[None, :]

    def transform(self, marg: np.ndarray) -> np.ndarray:
        """Feature matrix (n_pe, n_features) from marginal histograms (n_pe, sum nbins)."""
        marg = np.asarray(marg, np.float64)
        off = self.offsets
        total = marg[:, off[0]:off[1]].sum(axis=1)
        cols = [marg[:, off[0]:off[1]], np.log1p(total)[:, None]]
        qs = np.asarray(self.quantiles)
        for a in range(1, len(self.inner_edges)):
            h = marg[:, off[a]:off[a + 1]]
            n = np.maximum(h.sum(axis=1), 1e-12)
            cols.append((h @ self.values[a - 1] / n)[:, None])
            if len(qs):
                cdf = np.cumsum(h, axis=1) / n[:, None]
                j = np.minimum((cdf[:, :, None] < qs[None, None, :]).sum(axis=1), h.shape[1] - 1)
                prev = np.where(j > 0, np.take_along_axis(cdf, np.maximum(j - 1, 0), 1), 0.0)
                hj = np.take_along_axis(h, j, 1) / n[:, None]
                frac = np.clip((qs[None, :] - prev) / np.maximum(hj, 1e-12), 0, 1)
                b = self.bounds[a - 1]
                cols.append(b[j] + frac * (b[j + 1] - b[j]))
        return np.concatenate(cols, axis=1).astype(np.float32)


@dataclass
class _Setting:
    nps: NuisanceParameters
    lam: np.ndarray
    """Expected events per (process, occupied cell), weight NPs at 1."""
    var: np.ndarray
    """Sum of squared weights per (process, occupied cell): the MC variance of ``lam``."""
    onehot: np.ndarray
    """(occupied cell, marginal bin) incidence, float32."""


@dataclass
class CellBank:
    """Expected counts per joint cell of the shifted sample, one entry per shape-NP
    setting; draws the marginal histograms of simulated PEs (see module docstring)."""

    nbins: list[int]
    settings: list[_Setting]
    seconds: float = 0.0

    @classmethod
    def build(cls, data: TrainingData, sample: Events, classifier: Classifier,
              nps_list: Sequence[NuisanceParameters], axes, seed: int) -> "CellBank":
        """``axes(scores, events) -> list of per-event bin indices`` defines the cells."""
        t0 = time.perf_counter()
        settings = []
        nbins = None
        for k, nps in enumerate(nps_list):
            shifted = data.apply_systematics(sample, nps, seed + k)
            idx, nb = axes(classifier.predict(shifted), shifted)
            nbins = nb
            key = np.ravel_multi_index(idx, nb)
            cells, inv = np.unique(key, return_inverse=True)
            n_occ = len(cells)
            proc = shifted.process.astype(np.int64)
            flat = proc * n_occ + inv
            shape = (len(PROCESSES), n_occ)
            lam = np.bincount(flat, weights=shifted.weights, minlength=shape[0] * n_occ)
            var = np.bincount(flat, weights=shifted.weights ** 2, minlength=shape[0] * n_occ)
            lam, var = lam.reshape(shape), var.reshape(shape)
            per_axis = np.unravel_index(cells, nb)
            off = np.concatenate([[0], np.cumsum(nb)])
            onehot = np.zeros((n_occ, off[-1]), np.float32)
            for a, ia in enumerate(per_axis):
                onehot[np.arange(n_occ), off[a] + ia] = 1.0
            settings.append(_Setting(nps, lam, var, onehot))
        return cls(list(nbins or ()), settings, time.perf_counter() - t0)

    def simulate(self, norms: np.ndarray, setting: np.ndarray, rng: np.random.Generator,
                 mc_noise: float = 0.0, chunk: int = 256) -> np.ndarray:
        """Marginal histograms of PEs with per-process norms (n, n_proc) at shape settings.

        ``mc_noise > 0`` first draws each PE's cell expectations from a Gamma law with
        the bank's mean and ``mc_noise`` times its MC variance (sum of w^2): the PEs
        then also vary by the finite statistics of the sample the bank was made from,
        which real PEs (drawn from other events) do.
        """
        out = np.zeros((len(norms), sum(self.nbins)), np.float32)
        for k in np.unique(setting):
            rows = np.flatnonzero(setting == k)
            s = self.settings[int(k)]
            for start in range(0, len(rows), chunk):
                r = rows[start:start + chunk]
                lam = norms[r] @ s.lam
                if mc_noise > 0:
                    var = mc_noise * ((norms[r] ** 2) @ s.var)
                    ok = (var > 0) & (lam > 0)
                    safe_var, safe_lam = np.where(ok, var, 1.0), np.where(ok, lam, 1.0)
                    draw = rng.gamma(np.where(ok, safe_lam ** 2 / safe_var, 1.0))
                    lam = np.where(ok, draw * safe_var / safe_lam, lam)
                counts = rng.poisson(lam).astype(np.float32)
                out[r] = counts @ s.onehot
        return out


def subsample(events: Events, max_per_process: int | None, seed: int) -> Events:
    """At most ``max_per_process`` events per process, weights rescaled to keep yields."""
    if not max_per_process:
        return events
    rng = np.random.default_rng(seed)
    proc = events.process
    keep, scale = [], np.ones(len(events))
    for code in range(len(PROCESSES)):
        rows = np.flatnonzero(proc == code)
        if len(rows) > max_per_process:
            rows = np.sort(rng.choice(rows, max_per_process, replace=False))
            scale[rows] = (proc == code).sum() / max_per_process
        keep.append(rows)
    rows = np.sort(np.concatenate(keep))
    if len(rows) == len(events):
        return events
    return events[rows].with_columns(weights=events.weights[rows] * scale[rows])


@dataclass
class FeatureBank:
    """An aggregate definition plus the cell bank to simulate training PEs."""

    definition: AggregateDefinition
    bank: CellBank
    data: TrainingData
    info: dict[str, Any] = field(default_factory=dict)

    def simulate(self, mu: np.ndarray, rng: np.random.Generator,
                 mc_noise: float = 0.0) -> np.ndarray:
        """Feature matrix of simulated PEs at the given mu, NPs drawn from the priors."""
        mu = np.asarray(mu, float)
        norms = process_norm_matrix(mu, draw_weight_nps(self.data, len(mu), rng))
        setting = rng.integers(0, len(self.bank.settings), len(mu))
        return self.definition.transform(self.bank.simulate(norms, setting, rng, mc_noise))

    def features(self, scores: np.ndarray, events: Events) -> np.ndarray:
        return self.definition.transform(self.definition.marginals(scores, events))


_BANK_CACHE: list[tuple[tuple, Any, Any, FeatureBank]] = []


def feature_bank(data: TrainingData, classifier: Classifier | None, *, features=DEFAULT_FEATURES,
                 score_bins: int = 12, feature_bins: int = 12, quantiles=(0.25, 0.5, 0.75),
                 n_settings: int = 16, max_events_per_process: int | None = 300_000,
                 source: Events | None = None, seed_key: str = "train") -> FeatureBank:
    """The (cached) feature bank of ``data.holdout`` (or ``source``) and ``classifier``."""
    if classifier is None:
        raise ValueError("needs a [classifier] in the spec: the aggregated features include "
                         "the classifier-score histogram")
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown}; valid: {', '.join(FEATURES)}")
    source = data.holdout if source is None else source
    key = (tuple(features), score_bins, feature_bins, tuple(quantiles), n_settings,
           max_events_per_process, data.seed, tuple(data.randomised), data.fixed, seed_key)
    for k, src, clf, cached in _BANK_CACHE:
        if k == key and src is source and clf is classifier:
            return cached
    t0 = time.perf_counter()
    seed = derive_seed(data.seed, "aggregated-features", seed_key)
    sample = subsample(source, max_events_per_process, seed)
    nominal = data.apply_systematics(sample, nominal_nuisances(data).replace(
        ttbar_scale=1.0, diboson_scale=1.0, bkg_scale=1.0), seed)
    definition = AggregateDefinition.build(
        classifier.predict(nominal), nominal, nominal.labels == 1, features, score_bins,
        feature_bins, quantiles)

    def axes(scores, events):
        return definition.indices(scores, events), definition.nbins

    settings = shape_settings(data, n_settings, derive_seed(seed, "settings"))
    bank = CellBank.build(data, sample, classifier, settings, axes, derive_seed(seed, "smear"))
    fb = FeatureBank(definition, bank, data, {
        "n_settings": len(settings), "bank_events": len(sample),
        "occupied_cells_mean": float(np.mean([s.lam.shape[1] for s in bank.settings])),
        "bank_seconds": time.perf_counter() - t0})
    _BANK_CACHE.append((key, source, classifier, fb))
    del _BANK_CACHE[:-3]
    return fb


# -- the regressor ------------------------------------------------------------------------
class QuantileRegressor:
    """xgboost multi-quantile regression (``reg:quantileerror``), sorted outputs.

    Boosted quantiles fitted on noisy targets come out too narrow (the trees fit
    part of the noise).  With ``conformal=True`` (split-conformal quantile
    regression) the outer quantiles are shifted, each side separately, by the
    amount that gives them their nominal level on a held-out calibration split:
    ``c_lo = Q_{1-a}(q_lo - y)``, ``c_hi = Q_{1-a}(y - q_hi)`` with ``a`` the tail
    probability (0.15865), so that ``P(y < q_lo - c_lo) = a`` on fresh draws.
    """

    def __init__(self, quantiles=QUANTILES, n_estimators: int = 600, max_depth: int = 4,
                 learning_rate: float = 0.05, early_stopping_rounds: int = 30,
                 validation_fraction: float = 0.2, n_jobs: int | None = None,
                 seed: int = 0, conformal: bool = True,
                 calibration_fraction: float = 0.2) -> None:
        self.quantiles = tuple(float(q) for q in quantiles)
        if conformal and len(self.quantiles) < 2:
            raise ValueError("conformal calibration needs a lower and an upper quantile")
        self.params: dict[str, Any] = dict(
            n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate,
            early_stopping_rounds=early_stopping_rounds, validation_fraction=validation_fraction,
            n_jobs=n_jobs)
        self.seed = seed
        self.conformal = conformal
        self.calibration_fraction = calibration_fraction
        self.shifts = (0.0, 0.0)
        self.booster: Any = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> "QuantileRegressor":
        import xgboost as xgb

        p = self.params
        X = np.asarray(X, np.float32)
        y = np.asarray(y, np.float32)
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(len(y))
        n_val = int(p["validation_fraction"] * len(y)) if p["early_stopping_rounds"] else 0
        n_cal = int(self.calibration_fraction * len(y)) if self.conformal else 0
        cal, val, tr = perm[:n_cal], perm[n_cal:n_cal + n_val], perm[n_cal + n_val:]
        params = {"objective": "reg:quantileerror", "quantile_alpha": np.array(self.quantiles),
                  "tree_method": "hist", "max_depth": p["max_depth"], "eta": p["learning_rate"],
                  "seed": self.seed, "nthread": p["n_jobs"] or 0}
        dtrain = xgb.DMatrix(X[tr], label=y[tr])
        evals = [(xgb.DMatrix(X[val], label=y[val]), "validation")] if n_val else []
        self.booster = xgb.train(params, dtrain, num_boost_round=p["n_estimators"], evals=evals,
                                 early_stopping_rounds=p["early_stopping_rounds"] or None,
                                 verbose_eval=False)
        if n_val and self.booster.best_iteration is not None:
            self.booster = self.booster[: self.booster.best_iteration + 1]
        if n_cal:
            q = self._raw(X[cal])
            a_lo, a_hi = self.quantiles[0], 1.0 - self.quantiles[-1]
            self.shifts = (float(np.quantile(q[:, 0] - y[cal], 1.0 - a_lo)),
                           float(np.quantile(y[cal] - q[:, -1], 1.0 - a_hi)))
        return self

    def _raw(self, X: np.ndarray) -> np.ndarray:
        q = np.asarray(self.booster.inplace_predict(np.asarray(X, np.float32)), np.float64)
        return np.sort(q.reshape(len(X), -1), axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, n_quantiles), sorted along the quantile axis (no crossing); the outer
        quantiles include the conformal shifts."""
        if self.booster is None:
            raise RuntimeError("quantile regressor: predict() called before fit()")
        q = self._raw(X)
        if self.shifts != (0.0, 0.0):
            mid = q[:, 1:-1]
            q[:, 0] -= self.shifts[0]
            q[:, -1] += self.shifts[1]
            if mid.size:
                q[:, 0] = np.minimum(q[:, 0], mid.min(axis=1))
                q[:, -1] = np.maximum(q[:, -1], mid.max(axis=1))
        return q


# -- post-hoc tweaks ------------------------------------------------------------------------
def post_process(mu_hat: np.ndarray, lo: np.ndarray, hi: np.ndarray, inflation: float,
                 clip_range: tuple[float, float] | None):
    """Optional interval inflation about mu_hat (clipped into the interval) and clipping
    of the interval into a range; both are off by default (inflation 1, no range)."""
    mu_hat, lo, hi = (np.asarray(a, float).copy() for a in (mu_hat, lo, hi))
    if inflation != 1.0:
        c = np.clip(mu_hat, lo, hi)
        lo, hi = c - inflation * (c - lo), c + inflation * (hi - c)
    if clip_range is not None:
        a, b = clip_range
        lo, hi, mu_hat = np.clip(lo, a, b), np.clip(hi, a, b), np.clip(mu_hat, a, b)
    return mu_hat, lo, hi


def tweak_info(inflation: float, clip_range) -> dict[str, Any]:
    return {"inflation": float(inflation),
            "clip_range": None if clip_range is None else [float(v) for v in clip_range]}


def check_tweaks(inflation: float) -> None:
    if not inflation > 0:
        raise ValueError(f"inflation must be > 0, got {inflation}")


# -- parameters ---------------------------------------------------------------------------
@dataclass
class AggregateParams:
    """Parameters shared by the aggregated-feature strategies: the cell bank, the
    aggregated features, the training PEs and their mu prior, the post-hoc tweaks."""

    n_train_pes: int = 6000
    """Simulated training PEs (>= 50)."""
    n_settings: int = 16
    """Latin-hypercube settings of the shape NPs in the cell bank."""
    max_events_per_process: int | None = 300_000
    """Holdout events per process the bank is made from (``None``: all)."""
    features: tuple[str, ...] = DEFAULT_FEATURES
    """Key features whose means and quantiles are aggregated."""
    score_bins: int = 12
    """Classifier-score bins (equal expected signal)."""
    feature_bins: int = 12
    """Bins per key feature (equal expected total)."""
    feature_quantiles: tuple[float, ...] = (0.25, 0.5, 0.75)
    """Quantiles of each key feature in the aggregated features."""
    mu_prior: Literal["uniform", "log-uniform", "normal"] = "uniform"
    """Training prior of mu."""
    mu_prior_loc: float = 1.0
    """Centre of the ``normal`` mu prior."""
    mu_prior_scale: float = 0.2
    """Width of the ``normal`` mu prior."""
    mu_train_range: tuple[float, float] | None = None
    """Range of the training mu (default: the spec's mu range)."""
    n_jobs: int | None = None
    """xgboost threads (``None``: all)."""
    mc_noise: float = 0.0
    """Gamma noise of the bank's cell expectations, in units of their MC variance."""
    inflation: float = 1.0
    """Interval inflation about mu_hat (1: none)."""
    clip_to_range: bool = False
    """Clip intervals into the spec's mu range."""

    def __post_init__(self) -> None:
        if self.n_train_pes < 50:
            raise ValueError(f"n_train_pes={self.n_train_pes} is too small (>= 50)")
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(f"features: unknown feature(s) {unknown}; valid: {', '.join(FEATURES)}")
        check_tweaks(self.inflation)
        if self.mu_prior not in MU_PRIORS:
            raise ValueError(f"mu_prior {self.mu_prior!r} is not one of {', '.join(MU_PRIORS)}")
        if self.mc_noise < 0:
            raise ValueError(f"mc_noise={self.mc_noise} must be >= 0")


@dataclass
class QuantileRegressorParams:
    """Settings of the quantile regressor of "quantile-regression" (its parameters;
    "hybrid" uses the defaults)."""

    n_estimators: int = 300
    """Boosting rounds at most (early-stopped)."""
    max_depth: int = 4
    """Tree depth."""
    learning_rate: float = 0.1
    """xgboost eta."""
    early_stopping_rounds: int = 20
    """Rounds without improvement on the validation split (0: no early stopping)."""
    conformal: bool = True
    """Split-conformal shifts of the outer quantiles (see :class:`QuantileRegressor`)."""


# -- the strategies' plumbing ---------------------------------------------------------------
class AggregateStrategy:
    """Shared plumbing of the interval strategies on aggregated features.

    Built from resolved :class:`AggregateParams` (a subclass's own dataclass).
    ``fit`` simulates the training PEs from the (cached) feature bank and hands
    them to the subclass's ``fit_arrays(X, mu, seed)``; ``predict`` computes a PE's
    features and calls the subclass's ``predict_features(X) -> (mu_hat, mu16, mu84,
    infos)``, vectorised over rows.
    """

    def __init__(self, params: AggregateParams) -> None:
        self.params = params
        self.n_train_pes = int(params.n_train_pes)
        self.bank_params: dict[str, Any] = dict(
            features=tuple(params.features), score_bins=int(params.score_bins),
            feature_bins=int(params.feature_bins),
            quantiles=tuple(float(q) for q in params.feature_quantiles),
            n_settings=int(params.n_settings),
            max_events_per_process=params.max_events_per_process)
        self.prior_params = (params.mu_prior, params.mu_train_range, float(params.mu_prior_loc),
                             float(params.mu_prior_scale))
        self.inflation = float(params.inflation)
        self.clip_to_range = bool(params.clip_to_range)
        self.mc_noise = float(params.mc_noise)
        self.n_jobs = params.n_jobs
        self.classifier: Classifier | None = None
        self.bank: FeatureBank | None = None
        self.mu_prior: MuPrior | None = None
        self.clip_range: tuple[float, ...] | None = None
        self.fit_info: dict[str, Any] = {}

    def fit(self, data: TrainingData, classifier: Classifier | None,
            templates: Templates | None) -> None:
        """Simulate the training PEs and fit the model on them (templates are not used)."""
        X, mu = self.prepare(data, classifier)
        self.fit_arrays(X, mu, data.seed)

    def fit_arrays(self, X: np.ndarray, mu: np.ndarray, seed: int = 0) -> None:
        """Fit the model on simulated feature matrices (rows: PEs, truth ``mu``)."""
        raise NotImplementedError

    def predict_features(self, X: np.ndarray):
        """Vectorised ``(mu_hat, mu16, mu84, infos)`` for a feature matrix."""
        raise NotImplementedError

    def prepare(self, data: TrainingData, classifier: Classifier | None
                ) -> tuple[np.ndarray, np.ndarray]:
        """The feature bank, the mu prior and the training set ``(X, mu)`` of simulated PEs."""
        self.classifier = classifier
        self.bank = feature_bank(data, classifier, **self.bank_params)
        kind, rng_, loc, scale = self.prior_params
        self.mu_prior = mu_prior_from(data, kind, rng_, loc, scale)
        self.clip_range = tuple(data.mu_range) if self.clip_to_range else None
        rng = np.random.default_rng(derive_seed(data.seed, "training-pes", self.n_train_pes,
                                                str(self.mu_prior.as_dict())))
        t0 = time.perf_counter()
        mu = self.mu_prior.draw(self.n_train_pes, rng)
        X = self.bank.simulate(mu, rng, self.mc_noise)
        self.fit_info = {**self.bank.info, "simulate_seconds": time.perf_counter() - t0,
                         "n_train_pes": self.n_train_pes, "mu_prior": self.mu_prior.as_dict()}
        return X, mu

    def features(self, events: Events) -> np.ndarray:
        """The aggregated features of one PE, shape (1, n_features)."""
        if self.bank is None or self.classifier is None:
            raise RuntimeError(f"{type(self).__name__}: predict() called before fit()")
        return self.bank.features(self.classifier.predict(events), events)

    def predict(self, events: Events) -> IntervalResult:
        t0 = time.perf_counter()
        X = self.features(events)
        t1 = time.perf_counter()
        mu_hat, lo, hi, extra = self.predict_features(X)
        info = {**extra[0], **tweak_info(self.inflation, self.clip_range),
                "timings": {"features": t1 - t0, "regression": time.perf_counter() - t1}}
        return IntervalResult(mu_hat=mu_hat[0], mu16=lo[0], mu84=hi[0], info=info)

    def simulate_statistic(self, mu: np.ndarray, seed: int,
                           mc_noise: float | None = None) -> np.ndarray:
        """mu_hat of simulated PEs at the given mu (NPs from the priors): the fast
        path of the "calibrated" strategy (``mc_noise`` default: the strategy's)."""
        if self.bank is None:
            raise RuntimeError(f"{type(self).__name__}: simulate_statistic() called before fit()")
        rng = np.random.default_rng(seed)
        X = self.bank.simulate(np.asarray(mu, float), rng,
                               self.mc_noise if mc_noise is None else mc_noise)
        return self.predict_features(X)[0]


class QuantileRegression:
    """The model of "quantile-regression": xgboost quantiles (mu16, mu_hat, mu84) of mu
    on aggregated features, also one half of "hybrid"."""

    def __init__(self, params: QuantileRegressorParams | None = None,
                 n_jobs: int | None = None) -> None:
        p = params if params is not None else QuantileRegressorParams()
        self.settings: dict[str, Any] = dict(n_estimators=p.n_estimators, max_depth=p.max_depth,
                             learning_rate=p.learning_rate,
                             early_stopping_rounds=p.early_stopping_rounds, n_jobs=n_jobs,
                             conformal=bool(p.conformal))
        self.regressor: QuantileRegressor | None = None

    def fit(self, X: np.ndarray, mu: np.ndarray, seed: int = 0) -> dict[str, Any]:
        """Train on simulated PEs; returns the fit's info (seconds, trees, conformal shifts)."""
        t0 = time.perf_counter()
        self.regressor = QuantileRegressor(seed=seed % (2**31), **self.settings).fit(X, mu)
        return {"regression_seconds": time.perf_counter() - t0,
                "trees": self.regressor.booster.num_boosted_rounds(),
                "conformal_shifts": list(self.regressor.shifts)}

    def quantiles(self, X: np.ndarray) -> np.ndarray:
        """(n, 3): mu16, mu_hat, mu84 per row, sorted (conformal shifts included)."""
        if self.regressor is None:
            raise RuntimeError("quantile regression: predict() called before fit()")
        return self.regressor.predict(X)


__all__ = ["DEFAULT_FEATURES", "MU_PRIORS", "QUANTILES", "AggregateDefinition",
           "AggregateParams", "AggregateStrategy", "CellBank", "FeatureBank", "MuPrior",
           "QuantileRegression", "QuantileRegressor", "QuantileRegressorParams", "check_tweaks",
           "draw_prior", "draw_weight_nps", "feature_bank", "mu_prior_from", "post_process",
           "prior_ppf", "process_norm_matrix", "shape_settings", "subsample", "tweak_info"]
