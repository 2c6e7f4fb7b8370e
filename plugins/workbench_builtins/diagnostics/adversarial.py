"""Diagnostic ``adversarial``: hidden systematics found by an adversarial search.

Question answered: is there a *coherent detector miscalibration*, within the
experimental uncertainties of the primary objects, that leaves every observable
1D distribution and the feature correlations statistically unchanged (so no
control plot would reveal it) but flips the classifier's decisions or moves the
fitted mu?  If so, the pipeline has a systematic it does not model.

Perturbation (a low-dimensional, physical parametrisation; ``theta`` in units of
each parameter's uncertainty ``sigma``, searched in the box ``|theta| <= eps``):

* ``{lep,had,jet}_scale``: pT x (1 + sigma theta) for the lepton, the hadronic
  tau, both jets (and the rest of ``PRI_jet_all_pt``);
* ``{lep,had,jet}_slope``: pT-dependent scale, pT x (1 + sigma theta ln(pT/pT_ref));
* ``met_soft_scale``: the MET soft term (MET minus all stored objects) x (1 + sigma theta);
* ``{lep,had,jet}_eta`` / ``{lep,had,jet}_phi``: direction shifts (eta units / rad).

Defaults for sigma are in :data:`SIGMAS` (override with ``sigmas = {...}``).

Object changes are absorbed in the MET vector (as ``tes``/``jes`` are); ``PRI_n_jets``
is never touched directly.  The perturbed primaries then go through
:func:`workbench.systematics.systematics_columns` at the pipeline's nominal NPs
(same soft-term seed): 3-decimal rounding, the 26 GeV thresholds (which may drop
events or jets) and DER_ recomputation.

Search.  Gradient-free by default: per-coordinate screening (ordered, for a
:class:`~workbench.plugin.protocols.TreeClassifier` such as xgboost, by how many
tree split thresholds the coordinate makes events cross -- read from
``booster.get_dump(dump_format="json")``), greedy combination at the box
corners, then a (1+1) evolution strategy with step-size adaptation.  A
:class:`~workbench.plugin.protocols.GradientClassifier` (``gradient(events) ->
(n_events, n_features)``, d score / d feature, columns in ``classifier.features``
order for a :class:`~workbench.plugin.protocols.FeatureClassifier`, else all 28
FEATURES) also gets projected sign-gradient steps on the mean score, chained to
theta by finite differences of the (cheap) perturbation map.  Searches over increasing ``eps``
start from the previous optimum, so the fooling rate is non-decreasing in eps.

Constraints (all against the nominal-vs-nominal noise level: the
``noise_quantile`` of the distance between two random halves of the nominal
constraint sample, over ``noise_splits`` splits, times ``margin``): per-feature
KS statistic and Jensen-Shannon distance (paired: perturbed vs nominal events),
the Frobenius norm of the change of the correlation matrix, and -- for the final
optimum only, because it trains a model -- a classifier two-sample test (AUC of
a small xgboost separating perturbed half A from nominal half B, against the
closed-form null quantile of the held-out AUC; ``c2st_splits`` nominal splits
are reported to check that null).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from workbench import (
    FEATURES,
    PRIMARY,
    Events,
    FeatureClassifier,
    GradientClassifier,
    NuisanceParameters,
    TreeClassifier,
    TreeEnsemble,
    hookimpl,
    resolve_params,
)
from workbench.systematics.engine import systematics_columns
from workbench.toolkit.nominal import nominal_nuisances

SIGMAS = {
    "lep_scale": 0.005, "lep_slope": 0.005,
    "had_scale": 0.01, "had_slope": 0.01,
    "jet_scale": 0.01, "jet_slope": 0.01,
    "met_soft_scale": 0.1,
    "lep_eta": 0.002, "had_eta": 0.002, "jet_eta": 0.002,
    "lep_phi": 0.002, "had_phi": 0.002, "jet_phi": 0.002,
}
"""Default 1-sigma experimental uncertainty of each perturbation parameter."""
PT_REF = {"lep": 40.0, "had": 40.0, "jet": 60.0}
"""Reference pT (GeV) of the pT-dependent slopes (the factor is 1 there)."""
_OBJECTS = {"lep": ("PRI_lep",), "had": ("PRI_had",),
            "jet": ("PRI_jet_leading", "PRI_jet_subleading")}


# -- the perturbation ------------------------------------------------------------
def perturb_primaries(pri: dict[str, np.ndarray], theta: dict[str, float],
                      sigmas: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Primaries (float64) after the perturbation ``theta`` (in sigma units); new arrays.

    The MET vector absorbs the change of every stored object's transverse momentum,
    and the soft term (MET + sum of stored objects, negated) is scaled by
    ``met_soft_scale``.  Missing jets (pT < 0, i.e. -25) are left alone.
    """
    sig = {**SIGMAS, **(sigmas or {})}
    unknown = sorted(set(theta) - set(sig))
    if unknown:
        raise ValueError(f"adversarial: unknown perturbation parameter(s) {unknown}; "
                         f"valid: {', '.join(SIGMAS)}")
    t = {k: float(v) * sig[k] for k, v in theta.items()}
    out = {k: np.array(v, dtype=np.float64) for k, v in pri.items()}
    met_x = out["PRI_met"] * np.cos(out["PRI_met_phi"])
    met_y = out["PRI_met"] * np.sin(out["PRI_met_phi"])
    soft_x, soft_y = -met_x.copy(), -met_y.copy()
    dx = np.zeros_like(met_x)
    dy = np.zeros_like(met_y)
    jet_delta = np.zeros_like(met_x)
    for obj, prefixes in _OBJECTS.items():
        scale, slope = t.get(f"{obj}_scale", 0.0), t.get(f"{obj}_slope", 0.0)
        deta, dphi = t.get(f"{obj}_eta", 0.0), t.get(f"{obj}_phi", 0.0)
        for p in prefixes:
            pt, eta, phi = out[f"{p}_pt"], out[f"{p}_eta"], out[f"{p}_phi"]
            present = pt >= 0.0
            px0 = np.where(present, pt * np.cos(phi), 0.0)
            py0 = np.where(present, pt * np.sin(phi), 0.0)
            soft_x -= px0
            soft_y -= py0
            if scale == slope == deta == dphi == 0.0:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                log = np.where(present & (pt > 0), np.log(np.maximum(pt, 1e-9) / PT_REF[obj]), 0.0)
            factor = np.clip(1.0 + scale + slope * log, 0.5, 1.5)
            new_pt = np.where(present, pt * factor, pt)
            new_phi = np.where(present, np.mod(phi + dphi + np.pi, 2 * np.pi) - np.pi, phi)
            new_eta = np.where(present, eta + deta, eta)
            dx += np.where(present, new_pt * np.cos(new_phi), 0.0) - px0
            dy += np.where(present, new_pt * np.sin(new_phi), 0.0) - py0
            if obj == "jet":
                jet_delta += np.where(present, new_pt - pt, 0.0)
            out[f"{p}_pt"], out[f"{p}_eta"], out[f"{p}_phi"] = new_pt, new_eta, new_phi
    if "jet_scale" in t and t["jet_scale"] != 0.0 or jet_delta.any():
        lead = np.maximum(pri["PRI_jet_leading_pt"], 0.0)
        sub = np.maximum(pri["PRI_jet_subleading_pt"], 0.0)
        rest = np.maximum(np.asarray(pri["PRI_jet_all_pt"], np.float64) - lead - sub, 0.0)
        out["PRI_jet_all_pt"] = out["PRI_jet_all_pt"] + jet_delta + rest * t.get("jet_scale", 0.0)
    soft = t.get("met_soft_scale", 0.0)
    met_x = met_x - dx + soft * soft_x
    met_y = met_y - dy + soft * soft_y
    out["PRI_met"] = np.hypot(met_x, met_y)
    out["PRI_met_phi"] = np.arctan2(met_y, met_x)
    return out


def _events(cols: dict[str, np.ndarray]) -> Events:
    return Events(ak.Array({k: np.asarray(v) for k, v in cols.items()}))


class PerturbedSample:
    """A stored-level sample whose perturbed, thresholded features are cheap to recompute."""

    def __init__(self, events: Events, nps: NuisanceParameters, seed: int,
                 sigmas: dict[str, float]) -> None:
        self.pri = {name: events[name].astype(np.float64) for name in PRIMARY}
        self.weights = events.weights
        self.nps, self.seed, self.sigmas = nps, int(seed), sigmas
        self.nominal, keep = self.features({})
        self.keep0 = np.ones(len(self.weights), bool) if keep is None else keep

    def features(self, theta: dict[str, float]):
        """(28 float32 feature columns of the survivors, survivor mask or None)."""
        active = {k: v for k, v in theta.items() if v != 0.0}
        pri = perturb_primaries(self.pri, active, self.sigmas) if active else self.pri
        return systematics_columns(pri, self.nps, self.seed, thresholds=True)


# -- distances ------------------------------------------------------------------
def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (ties handled by evaluating at all points)."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def js_distance(a: np.ndarray, b: np.ndarray, edges: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two samples histogrammed on ``edges``."""
    from scipy.spatial.distance import jensenshannon

    ha = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1)
    hb = np.bincount(np.searchsorted(edges, b, side="right"), minlength=len(edges) + 1)
    return float(jensenshannon(ha / ha.sum(), hb / hb.sum(), base=2))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties averaged)."""
    from scipy.stats import rankdata

    r = rankdata(scores)
    n1 = int(labels.sum())
    n0 = len(labels) - n1
    return float((r[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def c2st_auc(x_a: np.ndarray, x_b: np.ndarray, seed: int, with_n: bool = False):
    """Classifier two-sample test: held-out AUC of small trees separating A from B
    (``with_n``: also the held-out class sizes, for the null width of the AUC)."""
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    x = np.vstack([x_a, x_b])
    y = np.r_[np.ones(len(x_a)), np.zeros(len(x_b))]
    test = rng.random(len(y)) < 0.5
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3,
                         "tree_method": "hist", "nthread": 2, "seed": int(seed % 2**31)},
                        xgb.DMatrix(x[~test], label=y[~test]), num_boost_round=30)
    value = auc(booster.inplace_predict(x[test]), y[test])
    if with_n:
        n1 = int(y[test].sum())
        return value, n1, int(test.sum()) - n1
    return value


def auc_null_quantile(n1: int, n0: int, quantile: float) -> float:
    """Quantile of the AUC of a score unrelated to the labels (Mann-Whitney null:
    mean 1/2, variance (n0 + n1 + 1) / (12 n0 n1))."""
    from scipy.stats import norm

    return 0.5 + float(norm.ppf(quantile)) * np.sqrt((n0 + n1 + 1) / (12.0 * n0 * n1))


class Constraints:
    """Distribution constraints with thresholds from the nominal-vs-nominal noise."""

    def __init__(self, sample: PerturbedSample, *, splits: int, quantile: float, margin: float,
                 bins: int, c2st_splits: int, seed: int) -> None:
        self.sample = sample
        nom = sample.nominal
        self.names = [f for f in FEATURES if np.ptp(nom[f]) > 0]
        self.edges = {}
        for f in self.names:
            e = np.unique(np.quantile(nom[f], np.linspace(0, 1, bins + 1)[1:-1]))
            self.edges[f] = e
        self.corr0 = self._corr(nom)
        rng = np.random.default_rng(seed)
        n = len(nom[self.names[0]])
        ks, js, cf = [], [], []
        for _ in range(splits):
            half = rng.random(n) < 0.5
            a = {f: nom[f][half] for f in self.names}
            b = {f: nom[f][~half] for f in self.names}
            ks.append([ks_statistic(a[f], b[f]) for f in self.names])
            js.append([js_distance(a[f], b[f], self.edges[f]) for f in self.names])
            cf.append(float(np.linalg.norm(self._corr(a) - self._corr(b))))
        q = float(quantile)
        self.ks_thr = margin * np.quantile(np.array(ks), q, axis=0)
        self.js_thr = margin * np.quantile(np.array(js), q, axis=0)
        self.corr_thr = margin * float(np.quantile(cf, q))
        # C2ST: the threshold is the null quantile of the held-out AUC (closed form);
        # the AUCs of nominal-vs-nominal splits are reported as a check of that null.
        self.c2st_noise = []
        m = self._matrix(nom)
        sizes = (n // 4, n - n // 2 - n // 4)
        for k in range(c2st_splits):
            half = rng.random(n) < 0.5
            value, n1, n0 = c2st_auc(m[half], m[~half], seed + k, with_n=True)
            self.c2st_noise.append(value)
            sizes = (n1, n0)
        self.c2st_thr = 0.5 + margin * (auc_null_quantile(*sizes, q) - 0.5)
        self.n_events = n

    def _matrix(self, cols) -> np.ndarray:
        return np.column_stack([np.asarray(cols[f], np.float64) for f in self.names])

    def _corr(self, cols) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.corrcoef(self._matrix(cols), rowvar=False)
        return np.nan_to_num(c)

    def measure(self, theta: dict[str, float]) -> dict[str, Any]:
        """Paired distances perturbed vs nominal, as ratios to their thresholds."""
        cols, _ = self.sample.features(theta)
        nom = self.sample.nominal
        ks = np.array([ks_statistic(cols[f], nom[f]) for f in self.names])
        js = np.array([js_distance(cols[f], nom[f], self.edges[f]) for f in self.names])
        corr = float(np.linalg.norm(self._corr(cols) - self.corr0))
        ks_r = ks / np.maximum(self.ks_thr, 1e-12)
        js_r = js / np.maximum(self.js_thr, 1e-12)
        worst = max(float(ks_r.max()), float(js_r.max()), corr / max(self.corr_thr, 1e-12))
        return {"feasible": worst <= 1.0, "worst_ratio": worst,
                "ks": dict(zip(self.names, ks.tolist())), "js": dict(zip(self.names, js.tolist())),
                "ks_ratio_max": float(ks_r.max()), "js_ratio_max": float(js_r.max()),
                "ks_worst_feature": self.names[int(np.argmax(ks_r))],
                "js_worst_feature": self.names[int(np.argmax(js_r))],
                "corr_frobenius": corr, "corr_ratio": corr / max(self.corr_thr, 1e-12)}

    def c2st(self, theta: dict[str, float], seed: int) -> float:
        """AUC of perturbed half A vs nominal half B (independent events)."""
        cols, keep = self.sample.features(theta)
        rng = np.random.default_rng(seed)
        n_all = len(self.sample.keep0)
        half = rng.random(n_all) < 0.5
        keep = np.ones(n_all, bool) if keep is None else keep
        a = self._matrix(cols)[half[keep]]
        b = self._matrix(self.sample.nominal)[~half[self.sample.keep0]]
        return c2st_auc(a, b, seed)

    def thresholds(self) -> dict[str, Any]:
        return {"ks": dict(zip(self.names, self.ks_thr.tolist())),
                "js": dict(zip(self.names, self.js_thr.tolist())),
                "corr_frobenius": self.corr_thr, "c2st_auc": self.c2st_thr,
                "c2st_noise_auc": self.c2st_noise, "n_events": self.n_events}


# -- tree split thresholds ----------------------------------------------------------
def tree_split_thresholds(booster, feature_names) -> dict[str, np.ndarray]:
    """Sorted split thresholds per feature over all trees (repeated as often as used)."""
    found: dict[str, list[float]] = {}
    names = list(feature_names)

    def walk(node):
        if "split" in node:
            f = node["split"]
            if isinstance(f, str) and f.startswith("f") and f not in names and f[1:].isdigit():
                f = names[int(f[1:])]
            found.setdefault(f, []).append(float(node["split_condition"]))
            for child in node.get("children", []):
                walk(child)

    for tree in booster.get_dump(dump_format="json"):
        walk(json.loads(tree))
    return {f: np.sort(np.array(v)) for f, v in found.items()}


# -- classifier objective -------------------------------------------------------------
class FoolingObjective:
    """Fooling rate at a working point on signal events, and a smooth surrogate."""

    def __init__(self, classifier, sample: PerturbedSample, working_point: float) -> None:
        self.classifier, self.sample = classifier, sample
        s0 = self._scores(sample.nominal)
        w = sample.weights[sample.keep0]
        order = np.argsort(s0)
        cum = np.cumsum(w[order]) / w.sum()
        self.threshold = float(s0[order][np.searchsorted(cum, 1.0 - working_point)])
        self.s0 = np.full(len(sample.keep0), -np.inf)
        self.s0[sample.keep0] = s0
        self.selected = self.s0 >= self.threshold
        self.w = sample.weights
        self.n_evaluations = 0

    def _scores(self, cols) -> np.ndarray:
        return np.asarray(self.classifier.predict(_events(cols)), dtype=np.float64)

    def scores(self, theta) -> np.ndarray:
        cols, keep = self.sample.features(theta)
        keep = np.ones(len(self.s0), bool) if keep is None else keep
        s = np.full(len(self.s0), -np.inf)
        s[keep] = self._scores(cols)
        self.n_evaluations += 1
        return s

    def evaluate(self, theta) -> dict[str, float]:
        s = self.scores(theta)
        sel, w = self.selected, self.w
        flips = sel & (s < self.threshold)
        gained = ~sel & (s >= self.threshold)
        drop = np.where(np.isfinite(s[sel]), self.s0[sel] - s[sel], self.s0[sel])
        both = np.isfinite(s) & np.isfinite(self.s0)
        return {"fooling_rate": float(w[flips].sum() / w[sel].sum()),
                "reverse_flip_rate": float(w[gained].sum() / max(w[~sel].sum(), 1e-300)),
                "mean_score_drop": float(np.average(drop, weights=w[sel])),
                "max_abs_score_change": float(np.max(np.abs(s[both] - self.s0[both]), initial=0.0)),
                "dropped_fraction": float(w[sel & ~np.isfinite(s)].sum() / w[sel].sum())}


def _value(r: dict[str, float]) -> float:
    # fooling rate first; the mean score drop breaks ties on its plateaus
    return r["fooling_rate"] + 1e-3 * r["mean_score_drop"]


@dataclass
class _Best:
    theta: dict[str, float]
    value: float
    result: dict[str, Any]
    constraints: dict[str, Any]


@dataclass
class AdversarialParams:
    """Parameters of the "adversarial" diagnostic."""

    parameters: tuple[str, ...] | None = None
    """Perturbation parameters searched (default: all of :data:`SIGMAS`)."""
    sigmas: dict[str, float] | None = None
    """Overrides of their 1-sigma uncertainties."""
    epsilons: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)
    """Box sizes |theta| <= eps (in sigma) of the successive searches."""
    working_point: float = 0.5
    """Signal efficiency of the score threshold whose decisions are attacked, in (0, 1)."""
    fooling_events: int = 20000
    """Signal holdout events of the fooling objective."""
    constraint_events: int = 40000
    """Holdout events of the distribution constraints."""
    evaluations: int = 60
    """Objective evaluations per search."""
    noise_splits: int = 20
    """Nominal-vs-nominal splits that set the constraint thresholds."""
    noise_quantile: float = 0.9
    """Quantile of the split distances used as threshold."""
    margin: float = 1.0
    """Factor on the thresholds."""
    js_bins: int = 40
    """Bins of the Jensen-Shannon distances."""
    c2st_splits: int = 4
    """Nominal splits of the classifier two-sample test (a check of its null)."""
    mu_probe: bool = True
    """Also search the perturbation that moves the fitted mu most."""
    mu: float = 1.0
    """True mu of the probe's pseudo-experiment."""
    mu_epsilon: float = 1.0
    """Box size of the mu probe (in sigma)."""
    mu_evaluations: int = 24
    """Interval fits of the mu probe at most."""
    tes_shift: float = 0.01
    """The tes shift the mu probe is compared with."""
    gradient_steps: int = 8
    """Sign-gradient steps for a gradient classifier (0: none)."""
    plots: bool = True
    """Write the plots."""

    def __post_init__(self) -> None:
        parameters = list(self.parameters) if self.parameters is not None else list(SIGMAS)
        bad = [p for p in parameters if p not in SIGMAS]
        bad += [p for p in (self.sigmas or {}) if p not in SIGMAS]
        if bad:
            raise ValueError(f"unknown perturbation parameter(s) {bad}; "
                             f"valid: {', '.join(SIGMAS)}")
        if not parameters:
            raise ValueError("'parameters' is empty")
        epsilons = sorted(float(e) for e in self.epsilons)
        if not epsilons or epsilons[0] < 0:
            raise ValueError(f"epsilons must be non-negative, got {self.epsilons}")
        if not 0 < self.working_point < 1:
            raise ValueError(f"working_point={self.working_point} must be in (0, 1)")


class AdversarialProbe:
    """Search a constrained detector miscalibration that fools the classifier / moves mu_hat."""

    def __init__(self, params: AdversarialParams | None = None, /, **overrides: Any) -> None:
        p = resolve_params(AdversarialParams, params, overrides, "adversarial")
        self.params = p
        self.parameters = list(p.parameters) if p.parameters is not None else list(SIGMAS)
        self.sigmas = {**SIGMAS, **{k: float(v) for k, v in (p.sigmas or {}).items()}}
        self.epsilons = sorted(float(e) for e in p.epsilons)
        self.working_point = float(p.working_point)
        self.fooling_events, self.constraint_events = int(p.fooling_events), int(p.constraint_events)
        self.evaluations, self.noise_splits = int(p.evaluations), int(p.noise_splits)
        self.noise_quantile, self.margin, self.js_bins = (float(p.noise_quantile), float(p.margin),
                                                          int(p.js_bins))
        self.c2st_splits = int(p.c2st_splits)
        self.mu_probe, self.mu, self.mu_epsilon = bool(p.mu_probe), float(p.mu), float(p.mu_epsilon)
        self.mu_evaluations, self.tes_shift = int(p.mu_evaluations), float(p.tes_shift)
        self.gradient_steps, self.plots = int(p.gradient_steps), bool(p.plots)

    # -- setup ---------------------------------------------------------------
    def prepare(self, data, classifier, seed: int):
        """Fooling objective and constraints on samples drawn from ``data.holdout``."""
        nps = nominal_nuisances(data)
        rng = np.random.default_rng(seed)
        hold = data.holdout
        sig = np.flatnonzero(hold.labels == 1)
        pick = rng.choice(sig, size=min(self.fooling_events, len(sig)), replace=False)
        fool = PerturbedSample(hold[np.sort(pick)], nps, seed + 1, self.sigmas)
        p = hold.weights / hold.weights.sum()
        rows = np.sort(rng.choice(len(hold), size=self.constraint_events, p=p))
        mix = hold[rows].with_columns(weights=np.ones(len(rows)))
        csample = PerturbedSample(mix, nps, seed + 2, self.sigmas)
        constraints = Constraints(csample, splits=self.noise_splits, quantile=self.noise_quantile,
                                  margin=self.margin, bins=self.js_bins,
                                  c2st_splits=self.c2st_splits, seed=seed + 3)
        return FoolingObjective(classifier, fool, self.working_point), constraints, nps

    def crossing_scores(self, objective: FoolingObjective, eps: float) -> dict[str, float] | None:
        """Per parameter: split thresholds crossed by the selected signal events at +eps."""
        classifier = objective.classifier
        if not isinstance(classifier, TreeClassifier):
            return None
        booster = classifier.booster
        if not isinstance(booster, TreeEnsemble):
            return None
        thr = tree_split_thresholds(booster, _feature_names(classifier))
        sample = objective.sample
        out = {}
        for p in self.parameters:
            cols, keep = sample.features({p: eps})
            keep = np.ones(len(sample.keep0), bool) if keep is None else keep
            both = sample.keep0 & keep & objective.selected
            i0, i1 = both[sample.keep0], both[keep]
            count = 0
            for f, t in thr.items():
                a = np.searchsorted(t, sample.nominal[f][i0], side="right")
                b = np.searchsorted(t, cols[f][i1], side="right")
                count += int(np.abs(a.astype(np.int64) - b).sum())
            out[p] = count / max(int(both.sum()), 1)
        return out

    # -- search (a): fooling rate -------------------------------------------------
    def search(self, objective: FoolingObjective, constraints: Constraints, eps: float,
               start: _Best | None, order: list[str], rng: np.random.Generator) -> _Best:
        """Best feasible theta in the box |theta| <= eps, starting from ``start``."""
        budget = [self.evaluations]
        seen: dict[tuple, tuple[float, dict, dict]] = {}

        def ev(theta):
            theta = {k: float(np.clip(v, -eps, eps)) for k, v in theta.items() if v != 0.0}
            key = tuple(sorted((k, round(v, 9)) for k, v in theta.items()))
            if key in seen:
                return theta, *seen[key]
            budget[0] -= 1
            cons = constraints.measure(theta)
            if not cons["feasible"]:
                out = (-np.inf, {}, cons)
            else:
                res = objective.evaluate(theta)
                out = (_value(res), res, cons)
            seen[key] = out
            if out[0] > top[0].value:  # every evaluation may become the optimum
                top[0] = _Best(theta, *out)
            return theta, *out

        top = [start or _Best({}, -np.inf, {}, {})]
        if start is None:
            ev({})
        best = top[0]
        if eps == 0:
            return best
        # 1) screening: every coordinate at both box faces (tree-aware order)
        gains = {}
        for p in order:
            for s in (1.0, -1.0):
                if budget[0] <= 0:
                    break
                th, v, res, cons = ev({**best.theta, p: s * eps})
                if v > gains.get(p, (-np.inf, 0))[0]:
                    gains[p] = (v, s)
        # 2) greedy combination at the corners (shrink if infeasible)
        ranked = sorted(gains, key=lambda p: -gains[p][0])
        current = top[0]
        for p in ranked:
            for frac in (1.0, 0.5, 0.25):
                if budget[0] <= 0:
                    break
                th, v, res, cons = ev({**current.theta, p: gains[p][1] * eps * frac})
                if v > current.value:
                    current = _Best(th, v, res, cons)
                    break
        # 3) projected sign-gradient steps for differentiable classifiers
        if isinstance(objective.classifier, GradientClassifier) and self.gradient_steps > 0:
            current = self._gradient_steps(objective, current, eps, ev, budget)
        # 4) (1+1)-ES with 1/5th-rule step adaptation
        step = 0.3 * eps
        names = list(order)
        while budget[0] > 0:
            trial = dict(current.theta)
            for p in names:
                trial[p] = trial.get(p, 0.0) + step * rng.normal()
            th, v, res, cons = ev(trial)
            if v > current.value:
                current = _Best(th, v, res, cons)
                step = min(step * 1.5, eps)
            else:
                step = max(step * 0.85, 0.02 * eps)
        return top[0]

    def _gradient_steps(self, objective, current, eps, ev, budget):
        """Minimise the mean score of the selected signal by sign-gradient steps on theta."""
        sample = objective.sample
        names = _feature_names(objective.classifier)
        h = 1e-3
        for _ in range(self.gradient_steps):
            if budget[0] <= 0:
                break
            cols, keep = sample.features(current.theta)
            keep = np.ones(len(sample.keep0), bool) if keep is None else keep
            rows = objective.selected[keep]
            g_feat = np.asarray(objective.classifier.gradient(_events(cols)))[rows]
            x0 = np.column_stack([cols[f] for f in names]).astype(np.float64)[rows]
            grad = {}
            for p in self.parameters:
                c1, k1 = sample.features({**current.theta, p: current.theta.get(p, 0.0) + h})
                k1 = np.ones(len(sample.keep0), bool) if k1 is None else k1
                if not np.array_equal(k1, keep):
                    continue  # a threshold moved: skip this coordinate for this step
                x1 = np.column_stack([c1[f] for f in names]).astype(np.float64)[rows]
                grad[p] = float(np.sum(g_feat * (x1 - x0)) / h)
            trial = {**current.theta}
            for p, g in grad.items():
                trial[p] = trial.get(p, 0.0) - 0.25 * eps * np.sign(g)
            th, v, res, cons = ev(trial)
            if v > current.value:
                current = _Best(th, v, res, cons)
            else:
                break
        return current

    # -- search (b): mu_hat ----------------------------------------------------------
    def probe_mu(self, pipeline, constraints: Constraints, nps, seed: int,
                 seed_theta: dict[str, float], rng) -> dict[str, Any]:
        from workbench.pseudo_experiments import sample_pseudo_experiment

        pool = pipeline.pool
        pri = {name: pool[name].astype(np.float64) for name in PRIMARY}
        extra = {k: pool[k] for k in pool.fields if k not in FEATURES}
        eps = self.mu_epsilon

        def fit(theta, nps_pe=nps):
            active = {k: v for k, v in theta.items() if v != 0.0}
            cols = perturb_primaries(pri, active, self.sigmas) if active else pri
            pe = sample_pseudo_experiment(_events({**cols, **extra}), self.mu, nps_pe, seed)
            return pipeline.interval.predict(pe.without_truth())

        r0 = fit({})
        r_tes = fit({}, nps.replace(tes=float(nps.tes + self.tes_shift)))
        half = 0.5 * (r0.mu84 - r0.mu16)
        d_tes = r_tes.mu_hat - r0.mu_hat
        calls = [2]
        seen = {}

        def ev(theta):
            theta = {k: float(np.clip(v, -eps, eps)) for k, v in theta.items() if v != 0.0}
            key = tuple(sorted((k, round(v, 9)) for k, v in theta.items()))
            if key not in seen:
                cons = constraints.measure(theta)
                if cons["feasible"]:
                    calls[0] += 1
                    seen[key] = (fit(theta).mu_hat - r0.mu_hat, cons)
                else:
                    seen[key] = (None, cons)
            return theta, *seen[key]

        best = ({}, 0.0, constraints.measure({}))

        def consider(theta):
            nonlocal best
            th, d, cons = ev(theta)
            if d is not None and abs(d) > abs(best[1]):
                best = (th, d, cons)
            return d

        # linear screening, then the corner of the linear model, shrunk onto the feasible set
        slope = {}
        for p in self.parameters:
            if calls[0] >= self.mu_evaluations:
                break
            d = consider({p: eps})
            slope[p] = 0.0 if d is None else d
        for direction in ({p: np.sign(g) * eps for p, g in slope.items() if g},
                          {p: -np.sign(g) * eps for p, g in slope.items() if g},
                          seed_theta):
            if not direction:
                continue
            scale = 1.0
            for _ in range(4):
                th, d, cons = ev({k: v * scale for k, v in direction.items()})
                if d is not None:
                    consider(th)
                    break
                scale *= 0.5
        step = 0.3 * eps
        while calls[0] < self.mu_evaluations:
            trial = {p: best[0].get(p, 0.0) + step * rng.normal() for p in self.parameters}
            before = best[1]
            consider(trial)
            step = min(step * 1.5, eps) if abs(best[1]) > abs(before) else max(step * 0.85, 0.05 * eps)
            if len(seen) > 4 * self.mu_evaluations:
                break  # the constraints reject everything around: stop
        theta, d_adv, cons = best
        return {
            "mu_true": self.mu, "epsilon": eps, "nuisances": nps.as_dict(),
            "nominal": {"mu_hat": r0.mu_hat, "mu16": r0.mu16, "mu84": r0.mu84},
            "half_width": half,
            "delta_mu_tes": d_tes, "tes_shift": self.tes_shift,
            "delta_mu_tes_in_halfwidths": d_tes / half if half > 0 else None,
            "theta": theta, "delta_mu": d_adv,
            "delta_mu_in_halfwidths": d_adv / half if half > 0 else None,
            "ratio_to_tes": abs(d_adv) / abs(d_tes) if d_tes else None,
            "linear_slopes": slope, "interval_calls": calls[0],
            "constraints": _short(cons),
        }

    # -- driver -------------------------------------------------------------------
    def run(self, context) -> dict[str, Any]:
        pipeline = context.pipeline
        classifier = pipeline.classifier
        if classifier is None:
            raise ValueError("adversarial: the spec has no [classifier] to probe")
        rng = np.random.default_rng(context.seed)
        objective, constraints, nps = self.prepare(pipeline.data, classifier, int(context.seed))
        ref_eps = 1.0 if 1.0 in self.epsilons else self.epsilons[-1]
        crossings = self.crossing_scores(objective, ref_eps)
        order = (sorted(self.parameters, key=lambda p: -crossings[p]) if crossings
                 else list(self.parameters))
        curve, best = [], None
        for eps in self.epsilons:
            best = self.search(objective, constraints, eps, best, order, rng)
            curve.append({"epsilon": eps, "theta": best.theta, **best.result,
                          "constraints": _short(best.constraints)})
        # classifier two-sample test on the optimum of each eps (the cheap proxies steered the search)
        if constraints.c2st_thr is not None:
            for k, point in enumerate(curve):
                a = constraints.c2st(point["theta"], int(context.seed) + 100 + k) if point["theta"] else 0.5
                point["constraints"]["c2st_auc"] = a
                point["constraints"]["c2st_ok"] = a <= constraints.c2st_thr
        report: dict[str, Any] = {
            "parameters": {p: self.sigmas[p] for p in self.parameters},
            "working_point": {"signal_efficiency": self.working_point,
                              "score_threshold": objective.threshold,
                              "n_signal_events": int(len(objective.s0))},
            "thresholds": constraints.thresholds(),
            "noise_quantile": self.noise_quantile, "margin": self.margin,
            "tree_crossings_per_event": crossings,
            "curve": curve,
            "classifier_evaluations": objective.n_evaluations,
            "gradient_hook": isinstance(classifier, GradientClassifier),
        }
        if self.mu_probe and pipeline.interval is not None and pipeline.pool is not None:
            seed_theta = next((c["theta"] for c in curve if c["epsilon"] >= self.mu_epsilon),
                              curve[-1]["theta"])
            seed_theta = {k: float(np.clip(v, -self.mu_epsilon, self.mu_epsilon))
                          for k, v in seed_theta.items()}
            report["mu_probe"] = self.probe_mu(pipeline, constraints, nps, int(context.seed) + 7,
                                               seed_theta, rng)
        at1 = min(curve, key=lambda c: abs(c["epsilon"] - 1.0))
        report["summary"] = {
            "fooling_rate": {str(c["epsilon"]): round(c["fooling_rate"], 5) for c in curve},
            "fooling_rate_at_1sigma": at1["fooling_rate"],
            "all_constraints_ok": all(c["constraints"]["feasible"] and c["constraints"].get("c2st_ok", True)
                                      for c in curve),
        }
        if "mu_probe" in report:
            m = report["mu_probe"]
            report["summary"].update({k: m[k] for k in ("delta_mu", "delta_mu_in_halfwidths",
                                                        "delta_mu_tes", "ratio_to_tes")})
        if self.plots and context.output is not None:
            report["plots"] = self.plot(report, Path(context.output))
        return report

    @staticmethod
    def plot(report: dict[str, Any], outdir: Path) -> list[str]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        outdir.mkdir(parents=True, exist_ok=True)
        curve = report["curve"]
        paths = []
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        ax = axes[0]
        ax.plot([c["epsilon"] for c in curve], [c["fooling_rate"] for c in curve], "o-")
        ax.set_xlabel(r"allowed perturbation $\epsilon$ [$\sigma$]")
        ax.set_ylabel("fooling rate at working point")
        ax = axes[1]
        last = curve[-1]
        names = list(report["parameters"])
        ax.barh(names, [last["theta"].get(p, 0.0) for p in names])
        ax.set_xlabel(rf"optimal $\theta$ at $\epsilon$={last['epsilon']} [$\sigma$]")
        ax = axes[2]
        thr = report["thresholds"]
        feats = list(thr["ks"])
        ks = [last["constraints"]["ks"].get(f, 0.0) / max(thr["ks"][f], 1e-12) for f in feats]
        js = [last["constraints"]["js"].get(f, 0.0) / max(thr["js"][f], 1e-12) for f in feats]
        y = np.arange(len(feats))
        ax.barh(y - 0.2, ks, height=0.4, label="KS / threshold")
        ax.barh(y + 0.2, js, height=0.4, label="JS / threshold")
        ax.axvline(1.0, color="k", ls="--")
        ax.set_yticks(y, [f.replace("PRI_", "").replace("DER_", "") for f in feats], fontsize=6)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = outdir / "adversarial_search.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(str(path))
        if "mu_probe" in report:
            m = report["mu_probe"]
            fig, ax = plt.subplots(figsize=(6, 4))
            labels = [f"tes +{m['tes_shift']}", f"adversarial ({m['epsilon']} sigma)"]
            ax.bar(labels, [m["delta_mu_tes"], m["delta_mu"]])
            ax.axhline(m["half_width"], color="k", ls=":", label="interval half-width")
            ax.axhline(-m["half_width"], color="k", ls=":")
            ax.set_ylabel(r"$\Delta\hat\mu$")
            ax.legend()
            fig.tight_layout()
            path = outdir / "adversarial_mu.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            paths.append(str(path))
        return paths


def _short(cons: dict[str, Any]) -> dict[str, Any]:
    return dict(cons)


def _feature_names(classifier) -> list[str]:
    """The columns of a classifier's gradient: its ``features``, else all FEATURES."""
    return list(classifier.features) if isinstance(classifier, FeatureClassifier) else list(FEATURES)


@hookimpl
def register_diagnostics(register):
    register("adversarial", AdversarialProbe, params=AdversarialParams)
