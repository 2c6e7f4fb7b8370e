"""Data-driven background: a mass-dependent transfer function learned from sidebands.

Regions (an "ABCD" with a shape): events are binned in ``DER_mass_vis`` and split
by a control variable into *high* (A: signal-like) and *low* (B: control).  In
each mass bin ``i`` the background in A is the background in B times a transfer
factor::

    nu_A,i = mu s_A,i + b_i T_i,     nu_B,i = mu s_B,i + b_i
    T_i    = TF_sim,i * exp(sum_k c_k P_k(x_i)) * gamma_i

``b_i`` (the background in B) is free in every bin and profiled in closed form;
``TF_sim`` is the simulated ratio A/B, corrected by a smooth function of the
mass (Legendre polynomial of degree ``correction_degree`` in the exponent).  The
signal bins of A sit on top of a smooth correction, so ``c`` is pinned by the
mass *sidebands* (bins outside ``window``), where there is no signal; the data
in B set the background normalisation bin by bin.  ``gamma_i ~ N(1, delta_i)``
carry the simulation's statistical uncertainty of ``TF_sim`` (``mc_stat``).
Signal templates ``s_A``, ``s_B`` come from simulation (``data.holdout``), so
signal contamination of the control regions is accounted for.

Two plugins use the model:

* generator ``sideband``: draws a "data" sample (a pseudo-experiment at
  ``data_mu`` from a source generator) and returns the *predicted* background
  in the signal region: the data events of B inside the mass window, weighted by
  ``b_hat_i T_hat_i / n_B,i``.  Signal (if asked for) is simulation in A.
* interval ``sideband``: fits mu on each pseudo-experiment with the binned
  Poisson likelihood above (iminuit) and reports the profile-likelihood interval
  where ``q(mu) = -2 ln lambda`` crosses ``chi2_1(CL)`` -- a cross-check of the
  simulation-template result that uses simulation only for signal shapes and
  the transfer factor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import brentq
from scipy.stats import chi2

from workbench import (
    EXPECTED_EVENTS,
    FEATURES,
    PROCESSES,
    Events,
    IntervalResult,
    NuisanceParameters,
    TrainingData,
    hookimpl,
    resolve_params,
)
from workbench.toolkit.nominal import nominal_nuisances

if TYPE_CHECKING:
    from workbench.plugin.registry import Registry

DEFAULT_EDGES = (30.0, 45.0, 55.0, 65.0, 75.0, 85.0, 95.0, 105.0, 115.0, 130.0, 150.0, 180.0, 250.0)
DEFAULT_WINDOW = (55.0, 115.0)


@dataclass
class SidebandModelParams:
    """The binned model's parameters, shared by the sideband interval and generator."""

    mass: str = "DER_mass_vis"
    """The mass feature that is binned."""
    edges: tuple[float, ...] = DEFAULT_EDGES
    """Mass bin edges (increasing, >= 3 values)."""
    window: tuple[float, float] = DEFAULT_WINDOW
    """The signal window [low, high]; bins outside are the sidebands."""
    correction_degree: int = 1
    """Degree of the Legendre correction of the transfer factor (-1: none)."""
    mc_stat: bool = True
    """Gaussian-constrained gammas for the simulation's statistical uncertainty."""
    mu_bounds: tuple[float, float] = (-5.0, 20.0)
    """Bounds of mu in the fits."""

    def __post_init__(self) -> None:
        if self.mass not in FEATURES:
            raise ValueError(f"unknown mass feature {self.mass!r}")
        check_model_options(self.edges, self.window, self.correction_degree)

    def model_options(self) -> dict[str, Any]:
        """The keyword arguments of :class:`SidebandModel`."""
        return dict(edges=self.edges, window=self.window,
                    correction_degree=self.correction_degree, mc_stat=self.mc_stat,
                    mu_bounds=self.mu_bounds)


@dataclass
class SidebandIntervalParams(SidebandModelParams):
    """Parameters of the "sideband" interval strategy."""

    control: str = "score"
    """The control variable: ``score`` (the classifier) or a feature."""
    control_cut: float | None = None
    """Region A is control > cut (default: the cut keeping ``signal_efficiency``)."""
    signal_efficiency: float = 0.5
    """Nominal signal fraction in A when ``control_cut`` is not given, in (0, 1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.control_cut is None and not 0 < self.signal_efficiency < 1:
            raise ValueError(f"signal_efficiency={self.signal_efficiency} must be in (0, 1)")


@dataclass
class SidebandGeneratorParams(SidebandModelParams):
    """Parameters of the "sideband" generator."""

    source: str = "simulator"
    """The generator of the simulation and of the pseudo-data (not "sideband")."""
    source_params: dict[str, Any] | None = None
    """Its parameters."""
    control: str = "DER_pt_h"
    """The control feature (no classifier here)."""
    control_cut: float = 100.0
    """Region A is control > cut."""
    data_mu: float = 0.0
    """Signal strength of the pseudo-data."""
    nuisances: dict[str, float] | None = None
    """NP values of the simulation and the pseudo-data (others nominal)."""
    luminosity_scale: float = 1.0
    """Factor on the expected yields (> 0)."""

    def __post_init__(self) -> None:
        if self.control == "score":
            raise ValueError("control must be a feature (no classifier here)")
        if self.control not in FEATURES or self.mass not in FEATURES:
            raise ValueError(f"unknown feature {self.control!r} or {self.mass!r}")
        super().__post_init__()
        if self.source == "sideband":
            raise ValueError("source cannot be 'sideband' itself")
        if not float(self.luminosity_scale) > 0:
            raise ValueError(f"luminosity_scale={self.luminosity_scale} must be > 0")


def check_model_options(edges, window, correction_degree) -> None:
    """The checks of :class:`SidebandModel`'s binning options."""
    e = np.asarray(edges, np.float64)
    if e.ndim != 1 or len(e) < 3 or np.any(np.diff(e) <= 0):
        raise ValueError(f"'edges' must be increasing with >= 3 values, got {edges}")
    if not float(window[0]) < float(window[1]):
        raise ValueError(f"'window' must be [low, high], got {window}")
    if int(correction_degree) < -1:
        raise ValueError("correction_degree must be >= -1 (-1: no correction)")


def profiled_background(n_a, n_b, a_a, a_b, t):
    """Closed-form MLE of b >= 0 for Pois(n_a | a_a + b t) Pois(n_b | a_b + b), per bin.

    Setting the derivative to zero gives ``A b^2 + B b + C = 0`` with
    ``A = (1+t) t``, ``B = (1+t)(a_a + t a_b) - t (n_a + n_b)``,
    ``C = (1+t) a_a a_b - n_a t a_b - n_b a_a``; the likelihood is concave in b,
    so the larger root is the maximum (clipped at 0).
    """
    n_a, n_b, a_a, a_b, t = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (n_a, n_b, a_a, a_b, t)))
    A = (1.0 + t) * t
    B = (1.0 + t) * (a_a + t * a_b) - t * (n_a + n_b)
    C = (1.0 + t) * a_a * a_b - n_a * t * a_b - n_b * a_a
    disc = np.sqrt(np.maximum(B * B - 4.0 * A * C, 0.0))
    q = -0.5 * (B + np.where(B >= 0, disc, -disc))
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = np.where(A > 0, q / A, 0.0)
        r2 = np.where(q != 0, C / q, 0.0)
    return np.maximum(np.maximum(r1, r2), 0.0)


class SidebandModel:
    """The binned likelihood of the module docstring, for one set of simulated templates."""

    def __init__(self, edges=DEFAULT_EDGES, window=DEFAULT_WINDOW, correction_degree: int = 1,
                 mc_stat: bool = True, mu_bounds=(-5.0, 20.0), confidence_level: float = 0.6827):
        try:
            check_model_options(edges, window, correction_degree)
        except ValueError as exc:
            raise ValueError(f"sideband: {exc}") from None
        self.edges = np.asarray(edges, np.float64)
        self.window = (float(window[0]), float(window[1]))
        self.degree = int(correction_degree)
        self.mc_stat = bool(mc_stat)
        self.mu_bounds = (float(mu_bounds[0]), float(mu_bounds[1]))
        self.threshold = float(chi2.ppf(confidence_level, 1))
        centres = 0.5 * (self.edges[1:] + self.edges[:-1])
        self.sideband_bins = (centres < self.window[0]) | (centres > self.window[1])
        x = 2.0 * (centres - self.edges[0]) / (self.edges[-1] - self.edges[0]) - 1.0
        self.basis = np.polynomial.legendre.legvander(x, max(self.degree, 0))[:, : self.degree + 1]

    def bin_index(self, mass: np.ndarray) -> np.ndarray:
        """Mass bin of each event, -1 outside the edges."""
        idx = np.searchsorted(self.edges, mass, side="right") - 1
        return np.where((idx >= 0) & (idx < len(self.edges) - 1), idx, -1)

    def counts(self, mass, high, weights=None):
        """(A, B) per mass bin: sums of weights (or counts) of high / low events."""
        idx = self.bin_index(np.asarray(mass))
        w = np.ones(len(idx)) if weights is None else np.asarray(weights, np.float64)
        ok = idx >= 0
        nb = len(self.edges) - 1
        high = np.asarray(high, bool)
        a = np.bincount(idx[ok & high], weights=w[ok & high], minlength=nb)
        b = np.bincount(idx[ok & ~high], weights=w[ok & ~high], minlength=nb)
        return a, b

    def set_simulation(self, signal: tuple, background: tuple, background_var: tuple) -> None:
        """Signal (s_A, s_B), background (b_A, b_B) and its sum w^2 per bin, from simulation."""
        self.s_a, self.s_b = (np.asarray(v, np.float64) for v in signal)
        b_a, b_b = (np.asarray(v, np.float64) for v in background)
        v_a, v_b = (np.asarray(v, np.float64) for v in background_var)
        self.use = (b_a > 0) & (b_b > 0)
        if not self.use.any():
            raise ValueError("sideband: the simulated background is empty in region A or B "
                             "in every mass bin; check 'control', the cut and 'edges'")
        with np.errstate(divide="ignore", invalid="ignore"):
            self.tf_sim = np.where(self.use, b_a / b_b, 0.0)
            rel = np.sqrt(v_a / b_a**2 + v_b / b_b**2)
        self.delta = np.where(self.use, np.maximum(rel, 1e-6), 1.0)

    # -- likelihood -----------------------------------------------------------
    def _split(self, p):
        mu = p[0]
        c = p[1:2 + self.degree]
        gamma = p[2 + self.degree:] if self.mc_stat else np.ones(len(self.tf_sim))
        return mu, c, gamma

    def transfer(self, c, gamma) -> np.ndarray:
        corr = np.exp(self.basis @ c) if self.degree >= 0 else 1.0
        return self.tf_sim * corr * gamma

    def nll(self, p, n_a, n_b) -> float:
        mu, c, gamma = self._split(np.asarray(p, np.float64))
        u = self.use
        t = self.transfer(c, gamma)[u]
        a_a, a_b = mu * self.s_a[u], mu * self.s_b[u]
        b = profiled_background(n_a[u], n_b[u], a_a, a_b, t)
        nu_a = np.maximum(a_a + b * t, 1e-12)
        nu_b = np.maximum(a_b + b, 1e-12)
        val = np.sum(nu_a - n_a[u] * np.log(nu_a)) + np.sum(nu_b - n_b[u] * np.log(nu_b))
        if self.mc_stat:
            val += 0.5 * np.sum(((gamma[u] - 1.0) / self.delta[u]) ** 2)
        return float(val)

    def _minuit(self, n_a, n_b, start, fix_mu=None):
        from iminuit import Minuit

        m = Minuit(lambda p: self.nll(p, n_a, n_b), np.asarray(start, np.float64))
        m.errordef = Minuit.LIKELIHOOD
        m.strategy = 0
        limits = [self.mu_bounds] + [(-5.0, 5.0)] * (self.degree + 1)
        if self.mc_stat:
            limits += [(max(1.0 - 8 * d, 1e-3), 1.0 + 8 * d) for d in self.delta]
        m.limits = limits
        if self.mc_stat:
            for i in np.flatnonzero(~self.use):  # bins without simulation: no parameter
                m.fixed[2 + self.degree + i] = True
        if fix_mu is not None:
            m.values[0] = fix_mu
            m.fixed[0] = True
        m.migrad()
        return m

    def fit(self, n_a, n_b) -> dict[str, Any]:
        """Global fit and profile-likelihood interval on observed counts per bin."""
        n_a, n_b = np.asarray(n_a, np.float64), np.asarray(n_b, np.float64)
        start = np.r_[1.0, np.zeros(self.degree + 1), np.ones(len(self.tf_sim) if self.mc_stat else 0)]
        m = self._minuit(n_a, n_b, start)
        best, nll0 = np.array(m.values), float(m.fval)
        calls = [0]

        def q(mu):
            nonlocal best, nll0
            calls[0] += 1
            mp = self._minuit(n_a, n_b, np.r_[mu, best[1:]], fix_mu=mu)
            val = 2.0 * (mp.fval - nll0)
            if val < -1e-3:  # a better minimum: adopt it
                best, nll0 = np.array(mp.values), float(mp.fval)
                best[0] = mu
            return val - self.threshold

        mu_hat = float(best[0])
        sigma = float(m.errors[0]) if m.errors[0] > 0 else 1.0
        lo_b, hi_b = self.mu_bounds

        def crossing(direction):
            inner = mu_hat
            step = max(sigma, 1e-3)
            for _ in range(30):
                outer = float(np.clip(inner + direction * step, lo_b, hi_b))
                if q(outer) > 0:
                    return brentq(q, min(inner, outer), max(inner, outer), xtol=1e-4), False
                if outer in (lo_b, hi_b):
                    return outer, True
                inner, step = outer, step * 1.6
            return outer, True

        mu84, at_hi = crossing(+1)
        mu16, at_lo = crossing(-1)
        mu, c, gamma = self._split(best)
        t = self.transfer(c, gamma)
        b = np.where(self.use, profiled_background(n_a, n_b, mu * self.s_a, mu * self.s_b, t), 0.0)
        return {"mu_hat": float(best[0]), "mu16": float(mu16),
                "mu84": float(mu84), "mu16_at_bound": at_lo, "mu84_at_bound": at_hi,
                "correction": c.tolist(), "gamma": gamma.tolist(), "transfer": t.tolist(),
                "background_b": b.tolist(), "background_a": (b * t).tolist(),
                "nll_min": nll0, "fit_valid": bool(m.valid), "profile_fits": calls[0]}


def _control_mask(events: Events, control: str, cut: float, classifier=None) -> np.ndarray:
    if control == "score":
        if classifier is None:
            raise ValueError("sideband: control='score' needs a [classifier] in the spec")
        return np.asarray(classifier.predict(events)) >= cut
    if control not in FEATURES:
        raise ValueError(f"sideband: unknown control {control!r}; use 'score' or a feature: "
                         f"{', '.join(FEATURES)}")
    return events[control] > cut


def simulated_templates(model: SidebandModel, sim: Events, high: np.ndarray, mass: str) -> None:
    """Fill the model's signal and background templates from a labelled weighted sample."""
    sig = sim.labels == 1
    m, w = sim[mass], sim.weights
    s = model.counts(m[sig], high[sig], w[sig])
    b = model.counts(m[~sig], high[~sig], w[~sig])
    v = model.counts(m[~sig], high[~sig], w[~sig] ** 2)
    model.set_simulation(s, b, v)


class SidebandInterval:
    """mu from a sideband/control-region background estimate (simulated signal only)."""

    def __init__(self, params: SidebandIntervalParams | None = None, /,
                 **overrides: Any) -> None:
        p = resolve_params(SidebandIntervalParams, params, overrides, "sideband")
        self.params = p
        self.control, self.control_cut = p.control, p.control_cut
        self.signal_efficiency, self.mass = float(p.signal_efficiency), p.mass
        self.options = p.model_options()
        self.classifier = None
        self.model: SidebandModel | None = None

    def fit(self, data: TrainingData, classifier, templates) -> None:
        self.classifier = classifier
        self.model = SidebandModel(confidence_level=data.confidence_level, **self.options)
        sim = data.apply_systematics(data.holdout, nominal_nuisances(data), data.seed)
        cut = self.control_cut
        if cut is None:  # the cut keeping `signal_efficiency` of the nominal signal
            if self.control == "score":
                if classifier is None:
                    raise ValueError("sideband: control='score' needs a [classifier] in the spec")
                y = np.asarray(classifier.predict(sim))
            elif self.control in FEATURES:
                y = sim[self.control]
            else:
                raise ValueError(f"sideband: unknown control {self.control!r}")
            sig = sim.labels == 1
            cut = float(np.quantile(y[sig], 1.0 - self.signal_efficiency))
        self.cut = cut
        high = _control_mask(sim, self.control, cut, classifier)
        simulated_templates(self.model, sim, high, self.mass)

    def predict(self, events: Events) -> IntervalResult:
        if self.model is None:
            raise RuntimeError("sideband interval: predict() called before fit()")
        high = _control_mask(events, self.control, self.cut, self.classifier)
        n_a, n_b = self.model.counts(events[self.mass], high)
        r = self.model.fit(n_a, n_b)
        info = {k: v for k, v in r.items() if k not in ("mu_hat", "mu16", "mu84")}
        info.update(control=self.control, control_cut=self.cut,
                    n_a=n_a.tolist(), n_b=n_b.tolist())
        nps = {f"correction_c{k}": v for k, v in enumerate(r["correction"])}
        return IntervalResult(r["mu_hat"], r["mu16"], r["mu84"], nuisances=nps, info=info)


class SidebandGenerator:
    """Background in the signal region predicted from the sidebands of a pseudo-data sample.

    ``generate(counts, seed)`` asks ``source`` for ``counts`` events: the
    simulation (signal templates, transfer factor).  The pseudo-data are *fresh*
    events of the same source (a PE at ``data_mu``, NPs ``nuisances``, expected
    yields times ``luminosity_scale``), not a resampled pool, so their bin counts
    are exactly Poisson as the likelihood assumes.  It returns the predicted background in region A inside ``window``:
    data events of B reweighted by the fitted transfer function (their process
    label is kept for bookkeeping only; the method never reads it), plus, if
    ``counts['htautau'] > 0``, simulated signal in A.  Weights sum to the
    *predicted* yields in the signal region, not to the expected yields of the
    whole selection.  The last fit is in ``last_fit``.

    ``registry``: where the source generator is built from; a generator is made
    without a run's context, so it is the process-wide registry unless set.
    """

    def __init__(self, params: SidebandGeneratorParams | None = None, /,
                 **overrides: Any) -> None:
        p = resolve_params(SidebandGeneratorParams, params, overrides, "sideband generator")
        self.params = p
        self.source, self.source_params = p.source, dict(p.source_params or {})
        self.control, self.control_cut, self.mass = p.control, float(p.control_cut), p.mass
        self.options = p.model_options()
        self.data_mu = float(p.data_mu)
        self.luminosity_scale = float(p.luminosity_scale)
        self.nps = NuisanceParameters.from_dict(dict(p.nuisances or {}))
        self.last_fit: dict[str, Any] | None = None
        self.registry: Registry | None = None

    def _source(self):
        from workbench.plugin.registry import get_registry

        registry = self.registry if self.registry is not None else get_registry()
        return registry.create("generator", self.source, self.source_params)

    def model_from(self, simulation: Events, data: Events) -> tuple[SidebandModel, dict]:
        """Fit the model: templates from ``simulation`` (labelled), counts from ``data``."""
        model = SidebandModel(**self.options)
        simulated_templates(model, simulation, simulation[self.control] > self.control_cut, self.mass)
        n_a, n_b = model.counts(data[self.mass], data[self.control] > self.control_cut)
        return model, {**model.fit(n_a, n_b), "n_a": n_a.tolist(), "n_b": n_b.tolist()}

    def generate(self, counts: Mapping[str, int], seed: int) -> Events:
        from workbench.pseudo_experiments import fresh_pseudo_experiment
        from workbench.systematics.engine import apply_systematics

        source = self._source()
        rng = np.random.default_rng(seed)
        events = source.generate(counts, int(rng.integers(2**31)))
        sim = events.with_columns(weights=events.weights * self.luminosity_scale)
        sim = apply_systematics(sim, self.nps, int(rng.integers(2**31)))
        expected = {p: EXPECTED_EVENTS[p] * self.luminosity_scale for p in PROCESSES}
        data = fresh_pseudo_experiment(source, expected, self.data_mu, self.nps,
                                       int(rng.integers(2**31)))
        model, fit = self.model_from(sim, data)
        self.last_fit = fit
        lo, hi = model.window
        m = data[self.mass]
        idx = model.bin_index(m)
        low = data[self.control] <= self.control_cut
        in_sr = (idx >= 0) & (m >= lo) & (m <= hi) & low & model.use[np.maximum(idx, 0)]
        n_b = np.asarray(fit["n_b"])
        per_event = np.asarray(fit["background_a"]) / np.maximum(n_b, 1.0)
        bkg = data[in_sr]
        bkg = bkg.with_columns(weights=per_event[idx[in_sr]])
        parts = [bkg]
        if counts.get("htautau", 0):
            ms = sim[self.mass]
            sel = (sim.labels == 1) & (sim[self.control] > self.control_cut) & (ms >= lo) & (ms <= hi)
            parts.append(sim[sel])
        return Events.concatenate(parts)


@hookimpl
def register_generators(register):
    register("sideband", SidebandGenerator, params=SidebandGeneratorParams)


@hookimpl
def register_intervals(register):
    register("sideband", SidebandInterval, params=SidebandIntervalParams)
