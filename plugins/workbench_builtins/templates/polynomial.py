"""Template strategy "polynomial": per-bin yields as fitted polynomials in each NP.

The idea of the challenge baseline: evaluate the holdout at a grid of values of
each shape NP (tes, jes, soft_met; the others at their nominal value), fit per
bin and per sample a polynomial response ``P_ksb(alpha_k)`` of the yield ratio
to nominal (through ``P(0) = 1``), and combine the NPs multiplicatively::

    nu_b = sum_s mu^[s = htautau] * prod_m f_ms(alpha_m) * T_sb * prod_k P_ksb(alpha_k)

* ``alpha`` is in prior standard deviations (tes = 1 + 0.01 alpha; soft_met =
  e^alpha, i.e. ln soft_met), each with a unit Gaussian constraint -- the prior.
* The weight scales are *exact*: ``f(alpha) = (loc + alpha scale)/loc`` on the
  samples they multiply (pyhf's normsys is an exponential approximation).
* MC statistics: Barlow-Beeston-lite, one Gaussian-constrained gamma per bin
  (relative width as pyhf's staterror), profiled analytically (closed-form
  root of a quadratic), so the fit has only 1 + 6 parameters.
* ``alpha`` of a shape NP is bounded by its grid (no polynomial extrapolation).

The channels are those of the HistFactory builder the "pyhf" strategy uses
(:mod:`workbench.toolkit.templates`, all of its parameters).  The built object
is a :class:`~workbench.toolkit.templates.BinnedTemplates` (same channels,
observations and a pyhf workspace with the usual +-1 sigma histosys, for
export) plus ``likelihood()``: the profile-likelihood interval strategy fits
that instead of the pyhf model (it is a
:class:`~workbench.plugin.protocols.LikelihoodTemplates`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench import PROCESSES, SIGNAL, Classifier, TrainingData, hookimpl, resolve_params
from workbench.toolkit.nominal import nominal_nuisances, np_alpha, np_value
from workbench.toolkit.templates import (
    NORM_NPS,
    BinnedTemplates,
    HistFactoryParams,
    HistFactoryTemplates,
    fill_channels,
)

DEFAULT_GRID = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
DEFAULT_LOGNORMAL_GRID = (-3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.609)
_FLOOR = 1e-300
_P_FLOOR = 1e-6


def polynomial_variable(alpha, log_scale: float = 0.0):
    """(x, dx/dalpha): x = alpha for Gaussian NPs; x = e^(sigma alpha) - 1 for lognormal
    ones, so that soft_met's response, close to linear in soft_met^2, is a low-degree
    polynomial of x instead of an exponential of alpha."""
    if log_scale:
        e = np.exp(log_scale * np.asarray(alpha, dtype=float))
        return e - 1.0, log_scale * e
    return np.asarray(alpha, dtype=float), np.ones_like(np.asarray(alpha, dtype=float))


def _log_scale(name: str, priors: Mapping) -> float:
    prior = priors[name]
    return float(prior.scale) if prior.kind == "lognormal" else 0.0


class PolynomialLikelihood:
    """NLL (Poisson + unit Gaussian constraints, staterror profiled) and its gradient.

    Parameters ``[mu, shape alphas..., scale alphas...]``; the counts of all
    channels are concatenated in ``channels`` order.
    """

    name = "polynomial"

    def __init__(self, *, channels: list[str], nominal: np.ndarray, coef: dict[str, np.ndarray],
                 alpha_range: dict[str, tuple[float, float]],
                 scales: dict[str, tuple[np.ndarray, float, tuple[float, float]]],
                 rel_stat: np.ndarray | None, mu_bounds: tuple[float, float],
                 signal_index: int, log_scale: dict[str, float] | None = None) -> None:
        self.channels = channels
        self.T = np.asarray(nominal, dtype=float)  # (S, B)
        self.S, self.nbins = self.T.shape
        self.shape_names = list(coef)
        self.coef = [np.asarray(coef[k], dtype=float) for k in self.shape_names]  # (S, B, d)
        # lognormal NPs: the polynomial variable is the physical shift e^(sigma alpha) - 1
        self.log_scale = [float((log_scale or {}).get(k, 0.0)) for k in self.shape_names]
        self.scale_names = list(scales)
        self.scale_mask = [scales[m][0] for m in self.scale_names]  # (S,) bool
        self.scale_slope = [scales[m][1] for m in self.scale_names]
        self.par_names = ["mu", *self.shape_names, *self.scale_names]
        self.poi_index = 0
        self.init = np.array([1.0] + [0.0] * (len(self.par_names) - 1))
        self.bounds = [tuple(mu_bounds)] + [alpha_range[k] for k in self.shape_names] + [
            scales[m][2] for m in self.scale_names]
        self.fixed = [False] * len(self.par_names)
        self.signal = signal_index
        self.s2 = None
        if rel_stat is not None:
            s2 = np.asarray(rel_stat, dtype=float) ** 2
            self.s2 = np.where(s2 > 0, s2, 0.0)

    def response(self, k: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """(P, dP/dalpha) of shape NP ``k``: 1 + sum_j c_j alpha^j, floored positive."""
        c = self.coef[k]
        d = c.shape[-1]
        x, dx = polynomial_variable(alpha, self.log_scale[k])
        powers = x ** np.arange(1, d + 1)
        dpowers = np.arange(1, d + 1) * x ** np.arange(0, d) * dx
        P = 1.0 + c @ powers
        dP = c @ dpowers
        low = P < _P_FLOOR
        return np.where(low, _P_FLOOR, P), np.where(low, 0.0, dP)

    def _parts(self, p: np.ndarray):
        p = np.asarray(p, dtype=float)
        K = len(self.shape_names)
        resp = [self.response(k, p[1 + k]) for k in range(K)]
        Q = np.ones_like(self.T)
        for P, _ in resp:
            Q = Q * P
        facs = []
        for j, (mask, slope) in enumerate(zip(self.scale_mask, self.scale_slope)):
            f = 1.0 + slope * p[1 + K + j]
            facs.append(np.where(mask, f, 1.0))
        F = np.ones(self.S)
        for f in facs:
            F = F * f
        mu_vec = np.ones(self.S)
        mu_vec[self.signal] = p[0]
        return resp, Q, facs, F, mu_vec

    def expected(self, p: np.ndarray) -> np.ndarray:
        """Expected counts per bin (gammas at 1)."""
        _, Q, _, F, mu_vec = self._parts(p)
        return (mu_vec * F) @ (self.T * Q)

    def _gamma(self, nu: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Per-bin gamma minimising nu g - n ln g + (g - 1)^2 / (2 s^2)."""
        if self.s2 is None:
            return np.ones_like(nu)
        g = np.ones_like(nu)
        m = self.s2 > 0
        a = 1.0 / self.s2[m]
        b = nu[m] - a
        disc = np.sqrt(b * b + 4.0 * a * n[m])
        # the two algebraically equal roots, each free of cancellation on its side
        g[m] = np.where(b > 0, 2.0 * n[m] / np.maximum(b + disc, _FLOOR), (disc - b) / (2.0 * a))
        return g

    def nll(self, p: np.ndarray, n: np.ndarray, n_const: float = 0.0) -> float:
        p = np.asarray(p, dtype=float)
        nu = np.maximum(self.expected(p), _FLOOR)
        g = self._gamma(nu, n)
        lam = np.maximum(nu * g, _FLOOR)
        value = np.sum(lam - n * np.log(lam)) + n_const + 0.5 * np.sum(p[1:] ** 2)
        if self.s2 is not None:
            m = self.s2 > 0
            value += 0.5 * np.sum((g[m] - 1.0) ** 2 / self.s2[m])
        return float(value)

    def nll_grad(self, p: np.ndarray, n: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        resp, Q, facs, F, mu_vec = self._parts(p)
        TQ = self.T * Q
        nu = np.maximum((mu_vec * F) @ TQ, _FLOOR)
        g = self._gamma(nu, n)
        r = g - n / nu  # dNLL/dnu_b with the gammas profiled (envelope theorem)
        grad = np.zeros(len(p))
        K = len(self.shape_names)
        sig = np.zeros(self.S)
        sig[self.signal] = 1.0
        grad[0] = (sig * F) @ TQ @ r
        for k, (P, dP) in enumerate(resp):
            others = np.ones_like(self.T)
            for j, (Pj, _) in enumerate(resp):
                if j != k:
                    others = others * Pj
            grad[1 + k] = (mu_vec * F) @ (self.T * others * dP) @ r
        for j, (mask, slope) in enumerate(zip(self.scale_mask, self.scale_slope)):
            rest = mu_vec.copy()
            for i, f in enumerate(facs):
                if i != j:
                    rest = rest * f
            grad[1 + K + j] = (np.where(mask, slope, 0.0) * rest) @ TQ @ r
        grad[1:] += p[1:]
        return grad


class PolynomialBinnedTemplates(BinnedTemplates):
    """Binned templates with per-bin polynomial NP responses and their own likelihood."""

    def __init__(self, base: BinnedTemplates, *, coef: dict, grids: dict, grid_values: dict,
                 scale_alpha: dict, degree: int) -> None:
        super().__init__(classifier=base.classifier, channels=base.channels,
                         shape_points=base.shape_points, scale_factors=base.scale_factors,
                         priors=base.priors, mu_bounds=base.mu_bounds, metadata=base.metadata)
        self.coef = coef
        self.grids = grids
        self.grid_values = grid_values
        self.scale_alpha = scale_alpha
        self.degree = degree

    def likelihood(self) -> PolynomialLikelihood:
        names = list(self.channels)
        T = np.concatenate([np.array([ch.sample_data[p] for p in PROCESSES])
                            for ch in self.channels.values()], axis=1)
        rel = None
        if all(ch.staterror is not None for ch in self.channels.values()):
            var = np.concatenate([np.sum([ch.staterror[p] ** 2 for p in PROCESSES], axis=0)
                                  for ch in self.channels.values()])
            rel = np.sqrt(var) / np.maximum(T.sum(axis=0), _FLOOR)
        scales = {}
        for name, (slope, bounds) in self.scale_alpha.items():
            mask = np.array([p in NORM_NPS[name] for p in PROCESSES])
            scales[name] = (mask, slope, bounds)
        alpha_range = {k: (float(min(g)), float(max(g))) for k, g in self.grids.items()}
        return PolynomialLikelihood(
            channels=names, nominal=T, coef=self.coef, alpha_range=alpha_range, scales=scales,
            rel_stat=rel, mu_bounds=self.mu_bounds, signal_index=PROCESSES.index(SIGNAL),
            log_scale={k: _log_scale(k, self.priors) for k in self.coef})

    def to_physical(self, parameter: str, value: float) -> float:
        """alpha -> NP value (exact scales: loc + alpha scale; soft_met = e^alpha)."""
        if parameter in self.shape_points or parameter in self.scale_alpha:
            prior = self.priors[parameter]
            if prior.kind == "lognormal":
                return float(np.exp(prior.loc + value * prior.scale))
            return float(prior.loc + value * prior.scale)
        return float(value)


@dataclass
class PolynomialParams(HistFactoryParams):
    """The HistFactory template parameters plus the polynomial responses'."""

    grid: list[float] | dict[str, list[float]] | None = None
    """alpha values per shape NP (a list for all, or ``{np: [...]}``); default -3..3 in
    steps of 1 (soft_met: -3, -2, -1, -0.5, 0, 0.5, 1, ln 5)."""
    degree: int = 3
    """Polynomial degree (capped at the number of grid points - 1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.degree) < 1:
            raise ValueError(f"degree={self.degree} must be >= 1")


class PolynomialTemplates(HistFactoryTemplates):
    """pyhf templates (all of their parameters) plus per-bin polynomial NP responses.

    ``PolynomialTemplates(PolynomialParams(degree=2))`` or ``PolynomialTemplates(degree=2)``.
    """

    def __init__(self, params: PolynomialParams | None = None, /, **overrides: Any) -> None:
        p = resolve_params(PolynomialParams, params, overrides, "polynomial templates")
        super().__init__(p)
        self.grid = p.grid
        self.degree = int(p.degree)

    def grid_for(self, name: str, priors: Mapping) -> list[float]:
        """Distinct alphas (clipped into the NP's range), always including 0."""
        if isinstance(self.grid, Mapping):
            raw = self.grid.get(name)
        else:
            raw = self.grid
        if raw is None:
            raw = DEFAULT_LOGNORMAL_GRID if priors[name].kind == "lognormal" else DEFAULT_GRID
        alphas = {0.0}
        for a in raw:
            alphas.add(round(np_alpha(name, np_value(name, float(a), priors), priors), 9))
        alphas = sorted(alphas)
        if len(alphas) < 3:
            raise ValueError(f"polynomial templates: grid of {name!r} needs >= 3 distinct points "
                             f"(got {alphas})")
        return alphas

    def build(self, data: TrainingData, classifier: Classifier) -> PolynomialBinnedTemplates:
        base = super().build(data, classifier)
        seed = int(data.seed) % (2**31 - 1)
        nominal_nps = nominal_nuisances(data)
        layout = {n: (ch.category, ch.edges) for n, ch in base.channels.items()}
        nom = np.concatenate([ch.raw["nominal"].T for ch in base.channels.values()], axis=1)
        coef, grids, grid_values = {}, {}, {}
        for name in base.shape_points:
            alphas = self.grid_for(name, data.priors)
            values = []
            for a in alphas:
                if a == 0.0:
                    values.append(nom)
                    continue
                nps = nominal_nps.replace(**{name: np_value(name, a, data.priors)})
                sample = data.apply_systematics(data.holdout, nps, seed)
                h = self.fill_channels(classifier, sample, layout)
                values.append(np.concatenate([h[n].values().T for n in base.channels], axis=1))
            V = np.array(values)  # (G, S, B)
            safe = nom > 0
            ratio = np.where(safe, V / np.where(safe, nom, 1.0), 1.0) - 1.0
            d = min(self.degree, len(alphas) - 1)
            x, _ = polynomial_variable(np.array(alphas), _log_scale(name, data.priors))
            A = x[:, None] ** np.arange(1, d + 1)  # (G, d), no constant: P(0)=1
            sol, *_ = np.linalg.lstsq(A, ratio.reshape(len(alphas), -1), rcond=None)
            coef[name] = sol.T.reshape(nom.shape[0], nom.shape[1], d)
            grids[name] = alphas
            grid_values[name] = V
        scale_alpha = {}
        for name in base.scale_factors:
            prior = data.priors[name]
            scale_alpha[name] = (prior.scale / prior.loc,
                                 ((prior.low - prior.loc) / prior.scale,
                                  (prior.high - prior.loc) / prior.scale))
        return PolynomialBinnedTemplates(base, coef=coef, grids=grids, grid_values=grid_values,
                                         scale_alpha=scale_alpha, degree=self.degree)


@hookimpl
def register_templates(register):
    register("polynomial", PolynomialTemplates, params=PolynomialParams)


__all__ = ["PolynomialBinnedTemplates", "PolynomialLikelihood", "PolynomialParams",
           "PolynomialTemplates", "compare_interpolation", "register_templates"]


def compare_interpolation(templates: PolynomialBinnedTemplates, data: TrainingData,
                          points: Sequence[tuple[str, float]]) -> list[dict]:
    """Per-bin total prediction (mu = 1) of pyhf's interpolation (the exported
    workspace: histosys code4p, normsys code4) and of the polynomials, against the
    holdout directly shifted to each ``(np, value)``; mean absolute relative error
    over bins with positive content."""
    import pyhf

    model = pyhf.Workspace(templates.workspace(None)).model()
    cfg = model.config
    lik = templates.likelihood()
    seed = int(data.seed) % (2**31 - 1)
    nominal_nps = nominal_nuisances(data)
    layout = {n: (ch.category, ch.edges) for n, ch in templates.channels.items()}
    out = []
    for name, value in points:
        alpha = np_alpha(name, value, data.priors)
        sample = data.apply_systematics(data.holdout, nominal_nps.replace(**{name: value}), seed)
        hists = fill_channels(templates.classifier, sample, layout)
        direct = np.concatenate([hists[c].values().sum(axis=1) for c in templates.channels])
        pars = np.array(cfg.suggested_init(), dtype=float)
        pars[cfg.par_slice(name)] = alpha
        full = np.asarray(model.expected_actualdata(pars))
        by_channel = {c: full[cfg.channel_slices[c]] for c in cfg.channels}
        pyhf_pred = np.concatenate([by_channel[c] for c in templates.channels])
        p = lik.init.copy()
        p[lik.par_names.index(name)] = alpha
        poly_pred = lik.expected(p)
        ok = direct > 0
        out.append({
            "np": name, "value": float(value), "alpha": alpha,
            "mare_pyhf": float(np.mean(np.abs(pyhf_pred[ok] - direct[ok]) / direct[ok])),
            "mare_polynomial": float(np.mean(np.abs(poly_pred[ok] - direct[ok]) / direct[ok])),
        })
    return out
