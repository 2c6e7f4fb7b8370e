"""A cut-and-count interval strategy: the simplest honest measurement of mu.

Events whose classifier score is above a threshold are counted.  The count ``n``
is modelled as ``Poisson(mu * s + k * b)``: ``s`` and ``b`` are the expected
signal (at mu = 1) and background above the threshold, estimated on the holdout
sample, and ``k`` a background normalisation with a Gaussian constraint
``N(1, sigma_b)``.  ``sigma_b`` is estimated on the holdout too: how much the
selected background moves when each randomised nuisance parameter is set to the
16% and 84% points of its prior, plus the holdout's own statistical error.

For fixed mu the constrained likelihood has its maximum in ``k`` at a root of a
quadratic, so the profile likelihood ratio ``q(mu) = -2 ln lambda(mu)`` is in
closed form; the interval is where ``q`` crosses the chi-square quantile of the
confidence level (1.0 for 68.27%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from workbench import IntervalResult, NuisanceParameters, Prior, resolve_params


def profiled_background(mu, n: float, s: float, b: float, sigma: float):
    """The conditional MLE of the background normalisation ``k`` at fixed ``mu``.

    Setting d/dk of ``nu - n ln nu + (k - 1)^2 / (2 sigma^2)`` (``nu = mu s + k b``) to
    zero gives ``b k^2 + (b^2 sigma^2 + mu s - b) k + sigma^2 b (mu s - n) - mu s = 0``;
    the larger root is the one with ``nu > 0``.
    """
    mu = np.asarray(mu, dtype=float)
    if sigma == 0:
        return np.ones_like(mu)
    a = b
    bq = b * b * sigma * sigma + mu * s - b
    c = sigma * sigma * b * (mu * s - n) - mu * s
    root = np.sqrt(np.maximum(bq * bq - 4 * a * c, 0.0))
    # the larger root, written without cancellation for either sign of bq
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(bq <= 0, (-bq + root) / (2 * a), (2 * c) / (-bq - root))
    return k


def q_mu(mu, n: float, s: float, b: float, sigma: float):
    """Profile likelihood ratio ``-2 ln lambda(mu)`` of the constrained counting model."""
    mu = np.asarray(mu, dtype=float)
    k = profiled_background(mu, n, s, b, sigma)
    nu = mu * s + k * b
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(n > 0, n * np.log(n / nu), 0.0)
        q = 2 * (nu - n + log_term)
        if sigma > 0:
            q = q + ((k - 1) / sigma) ** 2
    # nu = 0 is allowed only when nothing was observed (then q = 2 nu + constraint)
    return np.where((nu > 0) | ((n == 0) & (nu >= 0)), q, np.inf)


def poisson_profile_interval(n: float, s: float, b: float, sigma: float,
                             confidence_level: float = 0.6827) -> tuple[float, float, float]:
    """``(mu_hat, mu_low, mu_high)`` where ``q(mu)`` crosses ``chi2_1(confidence_level)``."""
    if s <= 0:
        raise ValueError(f"cut-and-count: expected signal s={s} must be positive")
    if b < 0 or sigma < 0 or n < 0:
        raise ValueError(f"cut-and-count: need n, b, sigma >= 0, got n={n}, b={b}, sigma={sigma}")
    crit = float(stats.chi2.ppf(confidence_level, df=1))
    mu_hat = (n - b) / s  # at k = 1 the constraint term vanishes and nu = n: q = 0
    scale = np.sqrt(max(n, 1.0) + (sigma * b) ** 2) / s

    def f(mu: float) -> float:
        return float(q_mu(mu, n, s, b, sigma)) - crit

    def crossing(direction: int) -> float:
        step = scale
        inner = mu_hat
        for _ in range(60):
            outer = mu_hat + direction * step
            if not np.isfinite(f(outer)) or f(outer) > 0:
                if not np.isfinite(f(outer)):
                    # left the domain nu > 0 (only possible when sigma = 0): bisect to its edge
                    outer = _last_finite(f, inner, outer)
                    if f(outer) <= 0:
                        return outer
                return optimize.brentq(f, min(inner, outer), max(inner, outer), xtol=1e-10 * scale)
            inner = outer
            step *= 2
        raise RuntimeError(f"cut-and-count: no interval crossing found for n={n}, s={s}, b={b}")

    return float(mu_hat), float(crossing(-1)), float(crossing(+1))


def _last_finite(f, inside: float, outside: float) -> float:
    for _ in range(200):
        mid = 0.5 * (inside + outside)
        if np.isfinite(f(mid)):
            inside = mid
        else:
            outside = mid
    return inside


def prior_quantiles(prior: Prior, low_q: float = 0.158655, high_q: float = 0.841345):
    """The prior's 16% and 84% points (its +-1 sigma for a normal), inside the clip range."""
    if prior.kind == "normal":
        lo, hi = (prior.loc + prior.scale * stats.norm.ppf(q) for q in (low_q, high_q))
    else:  # lognormal of loc, scale
        lo, hi = (np.exp(prior.loc + prior.scale * stats.norm.ppf(q)) for q in (low_q, high_q))
    return float(np.clip(lo, prior.low, prior.high)), float(np.clip(hi, prior.low, prior.high))


def prior_median(prior: Prior) -> float:
    value = prior.loc if prior.kind == "normal" else np.exp(prior.loc)
    return float(np.clip(value, prior.low, prior.high))


def tail_sums(scores: np.ndarray, weights: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Sum of ``weights`` over events with ``score > t``, for every ``t`` (one sort)."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    above = np.concatenate([np.cumsum(weights[order][::-1])[::-1], [0.0]])
    return above[np.searchsorted(sorted_scores, thresholds, side="right")]


@dataclass
class Selection:
    """Yields above one threshold: signal (mu = 1), background, its relative error."""

    threshold: float
    s: float
    b: float
    sigma_b: float

    @property
    def expected_width(self) -> float:
        """Approximate 68% width at mu = 1: 2 sqrt(s + b + (sigma_b b)^2) / s."""
        if self.s <= 0:
            return np.inf
        return 2 * np.sqrt(self.s + self.b + (self.sigma_b * self.b) ** 2) / self.s


@dataclass
class CutAndCountParams:
    """The strategy's parameters: the spec's ``[interval] params`` table, validated.

    Attributes
    ----------
    threshold:
        Classifier-score cut.  ``None`` chooses, among the thresholds that keep
        ``efficiencies`` of the signal, the one with the smallest expected width.
        Without a classifier in the spec every event is counted.
    bkg_uncertainty:
        Relative background-normalisation uncertainty; ``None`` estimates it from
        the priors of the randomised nuisance parameters and the holdout statistics.
    efficiencies:
        Candidate signal efficiencies for the automatic threshold.
    """

    threshold: float | None = None
    bkg_uncertainty: float | None = None
    efficiencies: list[float] | None = None

    def __post_init__(self) -> None:
        if self.bkg_uncertainty is not None and not self.bkg_uncertainty >= 0:
            raise ValueError(f"bkg_uncertainty={self.bkg_uncertainty} must be >= 0")
        if self.efficiencies is not None:
            effs = np.asarray(self.efficiencies, dtype=float)
            if effs.size == 0 or np.any((effs <= 0) | (effs > 1)):
                raise ValueError(f"efficiencies must be in (0, 1], got {self.efficiencies}")


class CutAndCount:
    """Count events above a classifier-score threshold; Poisson profile interval on mu.

    Built by the workbench from a validated :class:`CutAndCountParams`; from Python
    ``CutAndCount(threshold=0.9)`` works too.
    """

    def __init__(self, params: CutAndCountParams | None = None, /, **overrides) -> None:
        p = resolve_params(CutAndCountParams, params, overrides, "cut-and-count")
        self.threshold = p.threshold
        self.bkg_uncertainty = p.bkg_uncertainty
        self.efficiencies = np.asarray(p.efficiencies if p.efficiencies is not None
                                       else np.linspace(0.05, 1.0, 20), dtype=float)
        self.classifier = None
        self.selection: Selection | None = None
        self.confidence_level = 0.6827

    # -- training --------------------------------------------------------------
    def _central_nuisances(self, data) -> NuisanceParameters:
        """Where PEs are centred: the prior median of randomised NPs, fixed values otherwise."""
        values = data.fixed.as_dict()
        for name in data.randomised:
            values[name] = prior_median(data.priors[name])
        return NuisanceParameters.from_dict(values)

    def _scores(self, events) -> np.ndarray:
        if self.classifier is None:
            return np.ones(len(events))
        return np.asarray(self.classifier.predict(events), dtype=float)

    def fit(self, data, classifier, templates) -> None:
        self.classifier = classifier
        self.confidence_level = data.confidence_level
        centre = self._central_nuisances(data)
        nominal = data.apply_systematics(data.holdout, centre, data.seed)
        score = self._scores(nominal)
        is_sig = nominal.labels == 1
        w = nominal.weights
        if self.classifier is None:
            thresholds = np.array([0.0])
        elif self.threshold is not None:
            thresholds = np.array([self.threshold])
        else:
            # thresholds keeping the requested signal efficiencies (weighted quantiles);
            # just below an event's score, as the cut is ``score > threshold``
            sig_scores = score[is_sig]
            order = np.argsort(sig_scores, kind="stable")
            cum = np.cumsum(w[is_sig][order]) / w[is_sig].sum()
            idx = np.clip(np.searchsorted(cum, 1 - self.efficiencies), 0, len(order) - 1)
            thresholds = np.unique(np.nextafter(sig_scores[order][idx], -np.inf))
        s = tail_sums(score[is_sig], w[is_sig], thresholds)
        b = tail_sums(score[~is_sig], w[~is_sig], thresholds)
        b_sumw2 = tail_sums(score[~is_sig], w[~is_sig] ** 2, thresholds)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel2 = np.where(b > 0, b_sumw2 / b**2, 0.0)  # holdout statistics
            if self.bkg_uncertainty is not None:
                rel2 = np.full_like(b, self.bkg_uncertainty**2)
            else:
                for name in data.randomised:
                    lo, hi = prior_quantiles(data.priors[name])
                    shifted = []
                    for value in (lo, hi):
                        ev = data.apply_systematics(data.holdout, centre.replace(**{name: value}),
                                                    data.seed)
                        bkg = ev.labels == 0
                        shifted.append(tail_sums(self._scores(ev)[bkg], ev.weights[bkg], thresholds))
                    rel2 = rel2 + np.where(b > 0, (0.5 * (shifted[1] - shifted[0]) / b) ** 2, 0.0)
        candidates = [Selection(float(t), float(si), float(bi), float(np.sqrt(r)))
                      for t, si, bi, r in zip(thresholds, s, b, rel2)]
        self.selection = min(candidates, key=lambda c: c.expected_width)
        if not self.selection.s > 0:
            raise ValueError("cut-and-count: no signal above any threshold in the holdout")

    # -- inference -------------------------------------------------------------
    def predict(self, events) -> IntervalResult:
        if self.selection is None:
            raise RuntimeError("cut-and-count: predict() before fit()")
        sel = self.selection
        n = float(np.count_nonzero(self._scores(events) > sel.threshold))
        mu_hat, lo, hi = poisson_profile_interval(n, sel.s, sel.b, sel.sigma_b,
                                                  self.confidence_level)
        return IntervalResult(mu_hat, lo, hi, info={
            "n": n, "s": sel.s, "b": sel.b, "sigma_b": sel.sigma_b, "threshold": sel.threshold,
        })
