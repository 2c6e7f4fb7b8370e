"""Profile-likelihood fits of binned models: the compiled likelihood and the interval.

A pyhf workspace (or a template strategy's own likelihood) is set up once;
per observation only the counts change (auxiliary data stay at
``model.config.auxdata``).  The interval is where
``q(mu) = -2 ln lambda(mu) = 2 (min_theta NLL(mu, theta) - NLL(mu_hat, theta_hat))``
crosses ``chi2.ppf(CL, 1)`` (= 1.0 for CL = 0.6827), found by root finding on
the *profiled* likelihood (never mu_hat +- Hesse).  mu is bounded below by the
workspace bound (0): if ``q(0)`` is below the threshold, ``mu16 = 0``.

Speed: pyhf's numpy ``logpdf`` costs ~0.1 ms and has no gradient, which makes
dozens of profile fits too slow per PE.  The default ``engine="auto"``
therefore compiles the pyhf model into a vectorised NumPy NLL with an analytic
gradient (normfactor, normsys code1, histosys code0, staterror: pyhf's default
interpolation codes) and checks it against ``model.logpdf`` at random points
when fitting; a model it cannot compile or that fails the check falls back to
pyhf's own logpdf (``engine="pyhf"`` forces that).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammaln
from scipy.stats import chi2

from workbench.plugin.params import resolve_params
from workbench.plugin.protocols import (
    BinnedLikelihood,
    IntervalResult,
    ReparametrisedTemplates,
    Templates,
)

ENGINES = ("auto", "fast", "pyhf")
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
_LAMBDA_FLOOR = 1e-300


class _BetterMinimum(Exception):
    """A profile fit found a lower NLL than the global fit (restart from there)."""

    def __init__(self, values: np.ndarray) -> None:
        super().__init__("better minimum")
        self.values = values


class UnsupportedModel(ValueError):
    """The pyhf model uses a feature the compiled likelihood does not implement."""


_CODE4_AINV = np.linalg.inv(np.array([
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    [-1.0, 1.0, -1.0, 1.0, -1.0, 1.0],
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    [1.0, -2.0, 3.0, -4.0, 5.0, -6.0],
    [0.0, 2.0, 6.0, 12.0, 20.0, 30.0],
    [0.0, 2.0, -6.0, 12.0, -20.0, 30.0],
]))
"""pyhf's code4 system (alpha0 = 1): polynomial matching value, slope, curvature at +-1."""


class CompiledModel:
    """-log pdf of a pyhf model (main Poisson + Gaussian constraints) with its gradient.

    Parameters are pyhf's vector (``model.config`` order), so values, bounds and
    fixed flags carry over unchanged.  Expected counts per sample follow pyhf:
    ``(nominal + sum histosys deltas) * normfactors * normsys * staterror``,
    with the model's interpolation codes (``pyhf.Workspace.model()`` uses
    normsys code4 and histosys code4p; ``pyhf.Model`` code1 / code0).
    """

    def __init__(self, model, spec: dict) -> None:
        cfg = model.config
        settings = dict(cfg.modifier_settings)
        self.normsys_code = settings.get("normsys", {}).get("interpcode", "code1")
        self.histosys_code = settings.get("histosys", {}).get("interpcode", "code0")
        if self.normsys_code not in ("code1", "code4") or \
                self.histosys_code not in ("code0", "code4p"):
            raise UnsupportedModel(f"interpolation codes {settings}")
        offsets, nbins = {}, 0
        for ch in cfg.channels:
            offsets[ch] = nbins
            nbins += cfg.channel_nbins[ch]
        self.nbins, self.npars = nbins, cfg.npars
        rows: list[Any] = []
        nominal: list[np.ndarray] = []
        normfactors: dict[str, int] = {}
        histo: dict[str, int] = {}
        norms: dict[str, int] = {}
        nf_entries, hs_entries, ns_entries, se_entries = [], [], [], []
        channels = {c["name"]: c for c in spec["channels"]}
        for ch in cfg.channels:
            off, nb = offsets[ch], cfg.channel_nbins[ch]
            for sample in channels[ch]["samples"]:
                r = len(rows)
                rows.append((ch, sample["name"]))
                nom = np.zeros(nbins)
                nom[off:off + nb] = sample["data"]
                nominal.append(nom)
                for mod in sample.get("modifiers", []):
                    kind, name = mod["type"], mod["name"]
                    if kind == "normfactor":
                        nf_entries.append((r, normfactors.setdefault(name, len(normfactors))))
                    elif kind == "histosys":
                        hi = np.zeros(nbins)
                        lo = np.zeros(nbins)
                        hi[off:off + nb] = np.asarray(mod["data"]["hi_data"]) - sample["data"]
                        lo[off:off + nb] = np.asarray(sample["data"]) - mod["data"]["lo_data"]
                        hs_entries.append((r, histo.setdefault(name, len(histo)), hi, lo))
                    elif kind == "normsys":
                        ns_entries.append((r, norms.setdefault(name, len(norms)),
                                           float(mod["data"]["hi"]), float(mod["data"]["lo"])))
                    elif kind == "staterror":
                        se_entries.append((r, name, off, nb))
                    else:
                        raise UnsupportedModel(f"modifier type {kind!r} ({name!r})")
        R = len(rows)
        self.rows = rows
        self.nominal = np.array(nominal)
        self.nf_index = np.array([cfg.par_slice(n).start for n in normfactors], dtype=int)
        self.nf_mask = np.zeros((R, len(normfactors)), dtype=bool)
        for r, j in nf_entries:
            self.nf_mask[r, j] = True
        self.hs_index = np.array([cfg.par_slice(n).start for n in histo], dtype=int)
        up = np.zeros((len(histo), R * nbins))
        dn = np.zeros((len(histo), R * nbins))
        for r, h, u, d in hs_entries:
            up[h, r * nbins:(r + 1) * nbins] += u
            dn[h, r * nbins:(r + 1) * nbins] += d
        # delta_h = w1(alpha) S_h + w2(alpha) A_h for both codes (up = S + 8A, dn = S - 8A).
        self.hs_S: Any = 0.5 * (up + dn)
        self.hs_A: Any = 0.0625 * (up - dn)
        # normsys entries e = (row, parameter) with code1 logs and code4 coefficients.
        self.ns_index = np.array([cfg.par_slice(n).start for n in norms], dtype=int)
        for r, _, hi_r, lo_r in ns_entries:
            if hi_r <= 0 or lo_r <= 0:
                raise UnsupportedModel(f"normsys {rows[r]} has hi={hi_r}, lo={lo_r} (must be > 0)")
        self.ns_row = np.array([e[0] for e in ns_entries], dtype=int)
        self.ns_par = np.array([cfg.par_slice(list(norms)[e[1]]).start for e in ns_entries],
                               dtype=int)
        hi = np.array([e[2] for e in ns_entries], dtype=float)
        lo = np.array([e[3] for e in ns_entries], dtype=float)
        self.ns_loghi, self.ns_loglo = np.log(hi), np.log(lo)
        b = np.stack([hi - 1.0, lo - 1.0, self.ns_loghi * hi, -self.ns_loglo * lo,
                      self.ns_loghi**2 * hi, self.ns_loglo**2 * lo], axis=-1).reshape(-1, 6)
        self.ns_coef = b @ _CODE4_AINV.T  # (E, 6): a_1..a_6
        self.ns_loghi_l, self.ns_loglo_l = self.ns_loghi.tolist(), self.ns_loglo.tolist()
        self.ns_coef_l = self.ns_coef.tolist()
        self.R = R
        # staterror: gamma parameter p multiplies (row r, bin b) entries.
        se_r, se_b, se_p = [], [], []
        for r, name, off, nb in se_entries:
            sl = cfg.par_slice(name)
            if sl.stop - sl.start != nb:
                raise UnsupportedModel(f"staterror {name!r} does not have one parameter per bin")
            se_r += [r] * nb
            se_b += list(range(off, off + nb))
            se_p += list(range(sl.start, sl.stop))
        self.se_r, self.se_b, self.se_p = (np.array(a, dtype=int) for a in (se_r, se_b, se_p))
        # Gaussian constraints, in parameter order; aux values from the model.
        con_idx, con_sigma, con_aux = [], [], []
        aux = list(cfg.auxdata)
        pos = 0
        for name in cfg.auxdata_order:
            ps = cfg.param_set(name)
            if getattr(ps, "pdf_type", None) != "normal":
                raise UnsupportedModel(f"constraint of {name!r} is {ps.pdf_type!r}, not normal")
            n = ps.n_parameters
            sl = cfg.par_slice(name)
            sig = getattr(ps, "sigmas", None)
            con_idx += list(range(sl.start, sl.stop))
            con_sigma += list(sig) if sig is not None else [1.0] * n
            con_aux += aux[pos:pos + n]
            pos += n
        self.con_idx = np.array(con_idx, dtype=int)
        self.con_sigma = np.array(con_sigma, dtype=float)
        self.con_aux = np.array(con_aux, dtype=float)
        self.con_const = float(np.sum(np.log(self.con_sigma)) + len(con_idx) * _HALF_LOG_2PI)
        self.auxdata = np.array(aux, dtype=float)

    # -- interpolation ----------------------------------------------------------
    # (Few parameters: plain-float loops beat NumPy's per-call overhead here.)
    def _histosys_weights(self, a: np.ndarray):
        """(w2, dw2/da) with delta_h = alpha S_h + w2(alpha) A_h (up = S + 8A, dn = S - 8A)."""
        w2, dw2 = [], []
        code0 = self.histosys_code == "code0"
        for x in a.tolist():
            if code0 or abs(x) > 1.0:
                w2.append(8.0 * abs(x))
                dw2.append(8.0 if x >= 0 else -8.0)
            else:
                x2 = x * x
                w2.append(x2 * (15.0 + x2 * (-10.0 + 3.0 * x2)))
                dw2.append(x * (30.0 + x2 * (-40.0 + 18.0 * x2)))
        return np.array(w2), np.array(dw2)

    def _normsys(self, k: np.ndarray):
        """Per entry: log factor and d log f / d alpha (code1 or code4)."""
        logf, dlog = [], []
        code1 = self.normsys_code == "code1"
        for x, lh, ll, c in zip(k.tolist(), self.ns_loghi_l, self.ns_loglo_l, self.ns_coef_l):
            if x >= 1.0 or (code1 and x >= 0):
                logf.append(x * lh)
                dlog.append(lh)
            elif x <= -1.0 or code1:
                logf.append(-x * ll)
                dlog.append(-ll)
            else:
                f = 1.0 + x * (c[0] + x * (c[1] + x * (c[2] + x * (c[3] + x * (c[4] + x * c[5])))))
                df = c[0] + x * (2 * c[1] + x * (3 * c[2] + x * (4 * c[3] + x * (
                    5 * c[4] + x * 6 * c[5]))))
                f = max(f, _LAMBDA_FLOOR)
                logf.append(math.log(f))
                dlog.append(df / f)
        return np.array(logf), np.array(dlog)

    # -- core -----------------------------------------------------------------
    def _parts(self, p: np.ndarray):
        a = p[self.hs_index]
        w2, dw2 = self._histosys_weights(a)
        A = (self.nominal.ravel() + a @ self.hs_S + w2 @ self.hs_A).reshape(self.R, self.nbins)
        F = np.prod(np.where(self.nf_mask, p[self.nf_index], 1.0), axis=1)
        dlog = None
        if len(self.ns_row):
            logf, dlog = self._normsys(p[self.ns_par])
            F = F * np.exp(np.bincount(self.ns_row, logf, minlength=self.R))
        G = np.ones_like(A)
        G[self.se_r, self.se_b] = p[self.se_p]
        return A, F, G, dw2, dlog

    def expected(self, p: np.ndarray) -> np.ndarray:
        A, F, G, _, _ = self._parts(np.asarray(p, dtype=float))
        return (A * G).T @ F

    def nll(self, p: np.ndarray, n: np.ndarray, n_const: float) -> float:
        p = np.asarray(p, dtype=float)
        A, F, G, _, _ = self._parts(p)
        lam = np.maximum((A * G).T @ F, _LAMBDA_FLOOR)
        c = (p[self.con_idx] - self.con_aux) / self.con_sigma
        return float(np.sum(lam - n * np.log(lam)) + n_const + 0.5 * c @ c + self.con_const)

    def nll_grad(self, p: np.ndarray, n: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        A, F, G, dw2, dlog = self._parts(p)
        AG = A * G
        lam = np.maximum(AG.T @ F, _LAMBDA_FLOOR)
        r = 1.0 - n / lam  # d NLL / d lambda_b
        grad = np.zeros(self.npars)
        U = AG @ r  # per row: sum_b r_b A_rb G_rb  (= d NLL / d F_r)
        if len(self.hs_index):
            W = (G * F[:, None] * r).ravel()
            grad[self.hs_index] += self.hs_S @ W + dw2 * (self.hs_A @ W)
        if len(self.ns_row):
            np.add.at(grad, self.ns_par, (U * F)[self.ns_row] * dlog)
        if len(self.nf_index):
            nf = p[self.nf_index]
            for j, idx in enumerate(self.nf_index):
                if nf[j] != 0:
                    grad[idx] += np.sum(U * F * self.nf_mask[:, j]) / nf[j]
                else:  # F / nf is the product of the other factors
                    _, F0, _, _, _ = self._parts(np.where(np.arange(len(p)) == idx, 1.0, p))
                    grad[idx] += np.sum(U * F0 * self.nf_mask[:, j])
        if len(self.se_p):
            np.add.at(grad, self.se_p, r[self.se_b] * A[self.se_r, self.se_b] * F[self.se_r])
        grad[self.con_idx] += (p[self.con_idx] - self.con_aux) / self.con_sigma**2
        return grad


class _Objective:
    """NLL of one dataset as iminuit wants it (fcn + grad), for either engine."""

    def __init__(self, engine: str, model: Any, compiled: Any, n: np.ndarray,
                 auxdata: np.ndarray) -> None:
        self.n = np.asarray(n, dtype=float)
        self.calls = 0
        if engine == "fast":
            n_const = float(np.sum(gammaln(self.n + 1.0)))
            self.fcn = lambda p: self._count(compiled.nll(p, self.n, n_const))
            self.grad: Callable | None = lambda p: compiled.nll_grad(p, self.n)
        else:
            data = np.concatenate([self.n, auxdata])
            self.fcn = lambda p: self._count(-float(model.logpdf(np.asarray(p), data)[0]))
            self.grad = None

    def _count(self, value: float) -> float:
        self.calls += 1
        return value if np.isfinite(value) else 1e300


@dataclass
class ProfileParams:
    """Settings of the profile fits (the ``profile-likelihood`` strategy's parameters)."""

    engine: str = "auto"
    """``auto`` (compiled NumPy likelihood, pyhf fallback), ``fast`` or ``pyhf``."""
    tolerance: float = 0.01
    """MINUIT's EDM tolerance."""
    strategy: int = 1
    """MINUIT strategy (0, 1 or 2)."""
    xtol: float = 1e-4
    """Absolute tolerance of the q(mu) crossings in mu."""
    mu_bounds: tuple[float, float] | None = None
    """Bounds of mu in the fits (default: the model's)."""
    check_points: int = 5
    """Random points at which the compiled likelihood is checked against pyhf."""
    refit_tolerance: float = 1e-3
    """A profile point this far below the global minimum triggers a refit."""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r}; valid: {', '.join(ENGINES)}")
        if self.strategy not in (0, 1, 2):
            raise ValueError(f"strategy={self.strategy} must be 0, 1 or 2")
        if not self.tolerance > 0 or not self.xtol > 0:
            raise ValueError("tolerance and xtol must be > 0")
        if self.mu_bounds is not None and not (
                len(self.mu_bounds) == 2 and self.mu_bounds[0] < self.mu_bounds[1]):
            raise ValueError(f"mu_bounds={list(self.mu_bounds)} must be [low, high]")


class ProfileFitter:
    """Profile-likelihood fits and intervals (q(mu) = 1 crossings) of a binned model, with iminuit.

    ``setup(templates, workspace)`` prepares a pyhf workspace (compiled to a NumPy
    likelihood when it can be), ``setup_likelihood`` a template strategy's own
    likelihood; ``fit_counts(counts)`` then fits one observation.  The
    ``profile-likelihood`` interval strategy is this fitter driven by templates.
    """

    def __init__(self, params: ProfileParams | None = None, /, **overrides: Any) -> None:
        p = resolve_params(ProfileParams, params, overrides, "profile-likelihood")
        self.params = p
        self.engine = p.engine
        self.tolerance = p.tolerance
        self.strategy = p.strategy
        self.xtol = p.xtol
        self.mu_bounds = tuple(p.mu_bounds) if p.mu_bounds is not None else None
        self.check_points = p.check_points
        self.refit_tolerance = p.refit_tolerance
        self.templates: Templates | None = None
        self.model: Any = None

    @property
    def channels(self) -> list[str]:
        """Observation order: the channels whose counts ``fit_counts`` expects, concatenated."""
        return list(self.model.config.channels)

    # -- set-up ---------------------------------------------------------------
    def setup_likelihood(self, templates: Templates | None, likelihood: BinnedLikelihood,
                         confidence_level: float = 0.6827):
        """Prepare fits of a template strategy's own likelihood instead of a pyhf model.

        ``likelihood`` provides ``par_names``, ``init``, ``bounds``, ``fixed``,
        ``poi_index``, ``channels`` (observation order), ``nbins``, and
        ``nll(p, n, n_const)`` / ``nll_grad(p, n)`` like :class:`CompiledModel`.
        The interval (profiled q crossings) is computed exactly as for pyhf models.
        """
        from types import SimpleNamespace

        self.templates = templates
        self.spec: dict | None = None
        self.threshold = float(chi2.ppf(confidence_level, 1))
        channels = list(likelihood.channels)
        self.model = SimpleNamespace(config=SimpleNamespace(
            nmaindata=int(likelihood.nbins), channels=channels))
        self.poi_index = int(likelihood.poi_index)
        self.par_names = list(likelihood.par_names)
        self.init = np.array(likelihood.init, dtype=float)
        self.bounds = [tuple(b) for b in likelihood.bounds]
        if self.mu_bounds is not None:
            self.bounds[self.poi_index] = self.mu_bounds
        self.fixed = list(likelihood.fixed)
        self.auxdata = np.zeros(0)
        self.compiled: Any = likelihood  # a BinnedLikelihood or a CompiledModel
        self.engine_used = f"likelihood:{getattr(likelihood, 'name', type(likelihood).__name__)}"
        self.engine_note = ""
        self.report = [(name, i) for i, name in enumerate(self.par_names) if i != self.poi_index]
        self.gammas: list[slice] = []
        return self

    def setup(self, templates: Templates | None, spec: dict, confidence_level: float = 0.6827):
        """Prepare fits of the workspace ``spec`` (``templates`` fills PE observations)."""
        import pyhf

        if pyhf.tensorlib.name != "numpy":  # logpdf must return NumPy for iminuit
            pyhf.set_backend("numpy")
        self.templates = templates
        self.spec = spec
        self.threshold = float(chi2.ppf(confidence_level, 1))
        self.model = pyhf.Workspace(spec).model()
        cfg = self.model.config
        self.poi_index = cfg.poi_index
        self.par_names = _expanded_names(cfg)
        self.init = np.array(cfg.suggested_init(), dtype=float)
        self.bounds = [tuple(b) for b in cfg.suggested_bounds()]
        if self.mu_bounds is not None:
            self.bounds[self.poi_index] = self.mu_bounds
        self.fixed = list(cfg.suggested_fixed())
        self.auxdata = np.array(cfg.auxdata, dtype=float)
        self.compiled = None
        self.engine_used = "pyhf"
        self.engine_note = "forced" if self.engine == "pyhf" else ""
        if self.engine != "pyhf":
            try:
                compiled = CompiledModel(self.model, spec)
                self._check(compiled)
                self.compiled, self.engine_used = compiled, "fast"
            except (UnsupportedModel, AssertionError) as exc:
                if self.engine == "fast":
                    raise
                self.engine_note = f"fallback: {exc}"
                warnings.warn(f"profile-likelihood: using pyhf logpdf ({exc})", stacklevel=2)
        # Scalar NPs reported in results (staterror gammas are summarised in info).
        self.report = [
            (name, cfg.par_slice(name).start) for name in cfg.par_order
            if name != cfg.poi_name and cfg.par_slice(name).stop - cfg.par_slice(name).start == 1
        ]
        self.gammas = [
            cfg.par_slice(name) for name in cfg.par_order
            if cfg.par_slice(name).stop - cfg.par_slice(name).start > 1
        ]
        return self

    def _check(self, compiled: CompiledModel) -> None:
        """The compiled NLL must equal -model.logpdf at random points (else: fallback)."""
        rng = np.random.default_rng(12345)
        base = compiled.expected(self.init)
        for _ in range(max(1, self.check_points)):
            p = self.init.copy()
            for i, (lo, hi) in enumerate(self.bounds):
                if not self.fixed[i]:
                    step = 0.3 if i == self.poi_index else 0.5
                    p[i] = np.clip(p[i] + step * rng.standard_normal(), lo, hi)
            n = rng.poisson(np.maximum(base, 0.0)).astype(float)
            ref = -float(self.model.logpdf(p, np.concatenate([n, self.auxdata]))[0])
            ours = compiled.nll(p, n, float(np.sum(gammaln(n + 1))))
            if not np.isclose(ours, ref, rtol=1e-9, atol=1e-6):
                raise AssertionError(f"compiled NLL {ours} != pyhf {ref}")

    # -- fitting --------------------------------------------------------------
    def _minuit(self, objective: _Objective, start: np.ndarray, fix_mu: float | None,
                strategy: int):
        from iminuit import Minuit

        m = Minuit(objective.fcn, np.array(start, dtype=float), grad=objective.grad,
                   name=self.par_names)
        m.errordef = Minuit.LIKELIHOOD
        m.tol = self.tolerance
        m.strategy = strategy
        m.print_level = 0
        m.limits = self.bounds
        for i, f in enumerate(self.fixed):
            if f:
                m.fixed[i] = True
        if fix_mu is not None:
            m.values[self.poi_index] = fix_mu
            m.fixed[self.poi_index] = True
        m.migrad()
        if not m.valid:  # retry from where it stopped, more carefully
            m.strategy = 2
            m.migrad()
        return m

    def fit_counts(self, counts: np.ndarray) -> IntervalResult:
        """Fit observed counts (all channels, in model order) and find the interval."""
        if self.model is None:
            raise RuntimeError("profile-likelihood: predict() called before fit()")
        counts = np.asarray(counts, dtype=float)
        if counts.shape != (self.model.config.nmaindata,):
            raise ValueError(
                f"profile-likelihood: got {counts.shape} counts, the model has "
                f"{self.model.config.nmaindata} bins"
            )
        engine = "fast" if self.compiled is not None else "pyhf"
        objective = _Objective(engine, self.model, self.compiled, counts, self.auxdata)
        t0 = time.perf_counter()
        start = self.init
        for attempt in range(3):
            best = self._minuit(objective, start, None, self.strategy)
            try:
                found = self._interval(objective, best)
                break
            except _BetterMinimum as better:  # a profile fit beat the global fit: refit
                start = better.values
        else:  # pragma: no cover - pathological likelihoods only
            raise RuntimeError("profile-likelihood: global minimum keeps moving after 3 refits")
        mu16, mu84, q16, q84, low_found, high_found, n_profiles, profiles_valid, t1 = found
        t2 = time.perf_counter()
        theta_hat = np.array(best.values)
        mu_hat = float(theta_hat[self.poi_index])
        best.hesse()  # errors for pulls (the interval itself is profiled, not Hesse)
        errors = np.array(best.errors)
        nuisances = {name: float(theta_hat[i]) for name, i in self.report}
        nuisance_errors = {name: float(errors[i]) for name, i in self.report}
        info = {
            "engine": self.engine_used,
            **({"engine_note": self.engine_note} if self.engine_note else {}),
            "fit_valid": bool(best.valid),
            "nll_min": float(best.fval),
            "edm": float(best.fmin.edm),
            "refits": attempt,
            "mu_hesse_error": float(errors[self.poi_index]),
            "q_threshold": self.threshold,
            "q_at_mu16": q16,
            "q_at_mu84": q84,
            "mu16_at_bound": not low_found,
            "mu84_at_bound": not high_found,
            "n_profile_fits": n_profiles,
            "profiles_valid": profiles_valid,
            "n_calls": objective.calls,
            "timings": {"fit": t1 - t0, "interval": t2 - t1,
                        "hesse": time.perf_counter() - t2},
        }
        if self.gammas:
            g = np.concatenate([theta_hat[s] for s in self.gammas])
            info["staterror_max_abs_deviation"] = float(np.max(np.abs(g - 1.0)))
        if isinstance(self.templates, ReparametrisedTemplates):
            info["nuisances_physical"] = {
                name: self.templates.to_physical(name, value) for name, value in nuisances.items()
            }
        return IntervalResult(mu_hat=mu_hat, mu16=min(mu16, mu_hat), mu84=max(mu84, mu_hat),
                              nuisances=nuisances, nuisance_errors=nuisance_errors, info=info)

    def _interval(self, objective: _Objective, best):
        """Crossings of q(mu) = threshold on both sides of mu_hat, by brentq on profiles."""
        t_fit = time.perf_counter()
        nll_min = float(best.fval)
        theta_hat = np.array(best.values)
        mu_hat = float(theta_hat[self.poi_index])
        mu_lo, mu_hi = self.bounds[self.poi_index]
        thr = self.threshold
        cache: dict[float, tuple[float, np.ndarray, bool]] = {mu_hat: (0.0, theta_hat, True)}

        def q(mu: float) -> float:
            mu = float(mu)
            if mu not in cache:
                nearest = min(cache, key=lambda x: abs(x - mu))
                m = self._minuit(objective, cache[nearest][1], mu, 0)
                value = 2.0 * (float(m.fval) - nll_min)
                if value < -self.refit_tolerance:
                    raise _BetterMinimum(np.array(m.values))
                cache[mu] = (max(value, 0.0), np.array(m.values), bool(m.valid))
            return cache[mu][0]

        sigma = float(best.errors[self.poi_index])
        sigma = sigma if np.isfinite(sigma) and sigma > 0 else 0.1 * max(1.0, abs(mu_hat))

        def crossing(direction: int) -> tuple[float, bool]:
            """Root of q - thr on one side of mu_hat; (bound, False) if q stays below."""
            bound = mu_hi if direction > 0 else mu_lo
            if (mu_hat - bound) * direction >= 0:
                return bound, False
            inner, distance = mu_hat, sigma
            for _ in range(40):
                outer = mu_hat + direction * distance
                if (outer - bound) * direction >= 0:
                    outer = bound
                value = q(outer)
                if value >= thr:
                    a, b = sorted((inner, outer))
                    root = brentq(lambda x: q(x) - thr, a, b, xtol=self.xtol, rtol=1e-10)
                    return float(root), True
                if outer == bound:
                    return bound, False
                inner = outer
                # q ~ quadratic: jump to the predicted crossing, at least 1.2x further out.
                d = abs(outer - mu_hat)
                distance = max(d * np.sqrt(thr / max(value, 1e-9)), 1.2 * d) * 1.02
            raise RuntimeError("profile-likelihood: no q crossing found in 40 steps")

        mu16, low_found = crossing(-1)
        mu84, high_found = crossing(+1)
        q16 = q(mu16)
        q84 = q(mu84)
        return (mu16, mu84, q16, q84, low_found, high_found, len(cache) - 1,
                all(v[2] for v in cache.values()), t_fit)

def _expanded_names(cfg) -> list[str]:
    """One iminuit name per parameter (``staterror_x[3]`` for vector parameters)."""
    names = [""] * cfg.npars
    for name in cfg.par_order:
        sl = cfg.par_slice(name)
        if sl.stop - sl.start == 1:
            names[sl.start] = name
        else:
            for k, i in enumerate(range(sl.start, sl.stop)):
                names[i] = f"{name}[{k}]"
    return names
