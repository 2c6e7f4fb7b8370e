"""Hard processes at truth level: what each of the four processes puts in the event.

Each generator returns a :class:`Truth` batch: the visible lepton and hadronic
tau (or the jet faking it), the sum of invisible transverse momenta, the
hadronic partons (ISR, b quarks, W -> q q' quarks, VBF tag jets) as flat
arrays with an event index, and the unclustered soft recoil.  The detector
module turns that into reconstructed objects.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from workbench_builtins.generators.simulator import calibration as cal
from workbench_builtins.generators.simulator import detector as det_module
from workbench_builtins.generators.simulator import kinematics as kin

GLUON, LIGHT_QUARK, B_QUARK = 0, 1, 2
"""Parton flavours (Partons.kind): they set the rate at which a jet fakes a tau_h."""


@dataclass
class Partons:
    """Flat (ragged) list of hadronic partons; ``event`` indexes the batch;
    ``kind`` the flavour (GLUON, LIGHT_QUARK, B_QUARK; None: all gluons)."""

    event: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    kind: np.ndarray | None = None

    def kinds(self) -> np.ndarray:
        return np.zeros(self.pt.size, dtype=np.int8) if self.kind is None else self.kind

    @staticmethod
    def concat(parts: list["Partons"]) -> "Partons":
        cols = [np.concatenate([getattr(p, k) for p in parts]) for k in ("event", "pt", "eta", "phi")]
        return Partons(*cols, np.concatenate([p.kinds() for p in parts]))

    def subset(self, keep_events: np.ndarray) -> "Partons":
        """Partons of the events where ``keep_events`` (bool, per event) is true, re-indexed."""
        new_index = np.cumsum(keep_events) - 1
        keep = keep_events[self.event]
        eta = None if self.eta is None else self.eta[keep]
        kind = None if self.kind is None else self.kind[keep]
        return Partons(new_index[self.event[keep]], self.pt[keep], eta, self.phi[keep], kind)

    @staticmethod
    def from_p4(event, p4, kind: int = GLUON) -> "Partons":
        return Partons(event, kin.pt(p4), kin.eta(p4), kin.phi(p4), np.full(np.size(event), kind, dtype=np.int8))


@dataclass
class Truth:
    lep: np.ndarray  # (4, n) visible lepton
    had: np.ndarray  # (4, n) visible hadronic tau (or fake jet, after its response)
    invisible: np.ndarray  # (2, n) neutrino px, py
    partons: Partons
    soft: np.ndarray  # (2, n) unclustered recoil px, py
    lep_gauss: np.ndarray | None = None
    had_gauss: np.ndarray | None = None
    """Standard-normal draws of the detector smearing, when the generator drew
    them already to apply the selection early (None: the detector draws them)."""
    fake: np.ndarray | None = None
    """Per event (bool): no real tau_h (``had`` is zero), the tau candidate is
    one of the jets, chosen at reconstruction (jets.event_jets)."""


# --- building blocks ---------------------------------------------------------
def isr_recoil(rng, n, isr: cal.ISR, mass=None, mass_ref=None):
    """ISR emissions and the (px, py) recoil they give the hard system: a
    negative-binomial number (mean isr.rate, or, with the system's ``mass`` and
    isr.scale_power, the rate scaled by (ln(mass/pt0) / ln(mass_ref/pt0))^power,
    drawn as a Gamma-Poisson mixture), pT from the ISR spectrum."""
    if mass is None or isr.scale_power == 0:
        counts = _multiplicity_sampler(isr.rate, isr.shape)(rng.random(n))
    else:
        ratio = np.log(np.maximum(mass, isr.pt0 * 1.01) / isr.pt0) / np.log(mass_ref / isr.pt0)
        mean = isr.rate * ratio ** isr.scale_power
        if np.isfinite(isr.shape) and isr.shape > 0:
            mean = mean * rng.gamma(isr.shape, 1.0 / isr.shape, n)
        counts = np.minimum(rng.poisson(mean), 40)
    event = np.repeat(np.arange(n), counts)
    m = event.size
    pt = kin.emission_pt(1.0 - rng.random(m), isr)
    phi = kin.uniform_phi(rng, m)
    eta = kin.limit_rapidities(rng, rng.standard_normal(m) * isr.eta_sigma, pt, 0.0, isr.eta_sigma)
    soft = rng.standard_normal((2, n)) * isr.kt_sigma
    c, s = kin.cos_sin(phi)
    px = -kin.segment_sum(pt * c, event, n) - soft[0]
    py = -kin.segment_sum(pt * s, event, n) - soft[1]
    return Partons(event, pt, eta, phi), soft, px, py


@functools.lru_cache(maxsize=64)
def _multiplicity_sampler(mean: float, shape: float):
    return kin.guide_sampler(kin.negative_binomial_pmf(mean, shape))


@functools.lru_cache(maxsize=64)
def _multiplicity_sampler_tables(mean: float, shape: float):
    """(cdf, guide) of :func:`_multiplicity_sampler`, for the Numba kernels."""
    return kin.guide_tables(kin.negative_binomial_pmf(mean, shape))


def leptonic_tau(rng, tau, x=None, cos_theta=None):
    """tau -> l nu nu: the Michel energy fraction x at rest sets the nu-nu mass;
    ``cos_theta`` is the lepton angle to the tau flight direction at rest."""
    n = tau.shape[1]
    if x is None:
        x = kin.michel_fraction(rng, n)
    if cos_theta is None:
        cos_theta = rng.random(n) * 2.0 - 1.0
    m_nunu = kin.TAU_MASS * np.sqrt(np.maximum(1.0 - x, 0.0))
    return kin.two_body_decay(rng, tau, kin.TAU_MASS, 0.0, m_nunu, cos_theta, along_flight=True)


def hadronic_mass(rng, n):
    """Visible-system mass of tau -> hadrons nu from the decay-mode mix."""
    u = rng.random(n)
    m_vis = np.empty(n)
    edge = 0.0
    total = sum(mode[0] for mode in cal.TAU_HAD_MODES)
    for frac, mass, width, lo, hi in cal.TAU_HAD_MODES:
        sel = (u >= edge) & (u < edge + frac / total)
        edge += frac / total
        m_vis[sel] = mass if width <= 0 else kin.breit_wigner(rng, int(sel.sum()), mass, width, lo, hi)
    return m_vis


def hadronic_tau(rng, tau, m_vis=None, cos_theta=None):
    """tau -> h nu (2-body at rest, no polarisation) with the decay-mode mix of masses."""
    n = tau.shape[1]
    if m_vis is None:
        m_vis = hadronic_mass(rng, n)
    if cos_theta is None:
        cos_theta = rng.random(n) * 2.0 - 1.0
    return kin.two_body_decay(rng, tau, kin.TAU_MASS, m_vis, 0.0, cos_theta, along_flight=True)


def tau_directions(rng, boson, mass, angular_1pcos2: bool):
    """boson -> tau tau, isotropic (spin 0) or (1 + cos^2 theta) at rest."""
    n = boson.shape[1]
    cos_theta = None
    if angular_1pcos2:
        # inverse CDF of (1 + c^2): c^3/3 + c = 8u/3 - 4/3 (Cardano)
        q = 4.0 * rng.random(n) - 2.0
        r = np.sqrt(q * q + 1.0)
        cos_theta = np.cbrt(q + r) + np.cbrt(q - r)
    return kin.two_body_decay(rng, boson, mass, kin.TAU_MASS, kin.TAU_MASS, cos_theta)


def tau_pair(rng, boson, mass, angular_1pcos2: bool):
    """boson -> tau tau -> (l nu nu)(h nu); the tau angle at rest is isotropic or 1+cos^2.

    Which tau decays leptonically is immaterial: the angular law is symmetric.
    """
    tau1, tau2 = tau_directions(rng, boson, mass, angular_1pcos2)
    lep, nus = leptonic_tau(rng, tau1)
    had, nu = hadronic_tau(rng, tau2)
    return lep, had, nus[1:3] + nu[1:3]


def _w_decay(rng, w, w_mass, m1, top=None):
    """W -> f f' (f of mass m1, the charged lepton or down-type quark): isotropic,
    or with the SM helicity fractions of top decays to the W direction in the
    rest frame of ``top``."""
    if top is None:
        return kin.two_body_decay(rng, w, w_mass, m1, 0.0)
    cos = kin.w_helicity_cos(rng, w.shape[1], cal.W_HELICITY_LONG, cal.W_HELICITY_LEFT)
    return kin.helicity_decay(rng, w, w_mass, top, cos, m1, 0.0)


def w_to_lepton(rng, w, w_mass, top=None):
    """W -> l nu, a share of it through W -> tau nu, tau -> l nu nu (helicity
    angles of a top decay when the W's ``top`` is given)."""
    lep, nu = _w_decay(rng, w, w_mass, 0.0, top)
    via_tau = rng.random(w.shape[1]) < cal.TAU_LEPTONIC_SHARE_W
    if via_tau.any():
        tau, nu_w = _w_decay(rng, w[:, via_tau], w_mass[via_tau], kin.TAU_MASS,
                             None if top is None else top[:, via_tau])
        lep_t, nus = leptonic_tau(rng, tau)
        lep[:, via_tau] = lep_t
        nu[:, via_tau] = nu_w + nus
    return lep, nu[1:3]


# --- processes -----------------------------------------------------------------
@dataclass(frozen=True)
class Preselection:
    """Truth-level bounds below which an event can never pass the stored-dataset
    selection, whatever the smearing (6 sigma) or the decay's opening angle.

    ``lep_pt``/``had_pt``: smallest true visible pT that can pass; ``lep_eta``/
    ``had_eta``: largest tau |eta| whose visible product can still be inside
    the acceptance (the product is within asin(m_tau / 2p) of its tau).
    """

    lep_pt: float
    had_pt: float
    lep_eta: float
    had_eta: float


@functools.lru_cache(maxsize=16)
def preselection(det: cal.Detector) -> Preselection:
    lep_pt = cal.LEP_PT_MIN / (1.0 + 6.0 * det.lep_resolution)
    # had_scale * p * (1 + 6 sigma(p)) increases with p: the smallest p reaching the cut
    p = np.linspace(0.05, cal.HAD_PT_MIN * 2.0, 200001)
    sigma = np.sqrt(det.had_stochastic**2 / np.maximum(p, 1.0) + det.had_resolution**2)
    reach = det.had_scale * p * (1.0 + 6.0 * sigma)
    had_pt = float(p[max(np.searchsorted(reach, cal.HAD_PT_MIN) - 1, 0)])

    def eta_bound(eta_max, p_min):
        theta = 2.0 * np.arctan(np.exp(-eta_max)) - np.arcsin(min(1.0, kin.TAU_MASS / (2.0 * p_min)))
        return float(-np.log(np.tan(theta / 2.0))) if theta > 0 else np.inf

    return Preselection(lep_pt, had_pt, eta_bound(cal.LEP_ETA_MAX, lep_pt), eta_bound(cal.HAD_ETA_MAX, had_pt))


def _required_boson_pt(z, mass, sin_t, cos_t, pt_min):
    """Smallest boson pT for which a visible product carrying the collinear
    fraction ``z`` of a tau can reach ``pt_min`` (float32, may be 0).

    pT_vis <= z (pT_tau + m_tau) + m_tau, and with the tau at angle theta* to the
    beam in the boson rest frame, pT_tau <= (m_T sin theta* + pT_B) / 2 (a
    transverse boost of the rest-frame momentum, p* <= E* = m / 2); solved for pT_B.
    """
    f = np.float32
    q = (f(pt_min - kin.TAU_MASS)) / np.maximum(z, f(1e-6)) - f(kin.TAU_MASS)
    sm = sin_t * mass
    root = np.sqrt(f(4.0) * q * q + (cos_t * mass) ** 2)
    need = (f(4.0) * q * q - sm * sm) / (f(2.0) * q + sin_t * root)
    return np.where(sm >= f(2.0) * q, f(0.0), need)


def resonance(rng, n, cfg: cal.Resonance, det: cal.Detector | None = None) -> Truth:
    """gg/qq -> H/Z (+ ISR), or VBF qq -> qqH, then -> tau tau -> l tau_h.

    The NumPy reference of the physics: the Simulator uses the fused fast path
    of :mod:`.resonance` (same distributions, KS-tested).  Its stage-A tau-pT
    bound holds only at zero boson rapidity (see resonance_kernel.tau_pt_bound),
    so it drops ~1 in 10^5 selectable VBF Higgs events.

    Only ~10% of the candidates are selected, so the variables that decide it are
    drawn first and the rest only for the survivors of exact bounds (an event is
    dropped early only if it could never pass the selection; the survivors'
    distribution is unchanged).  Stage A (all candidates, float32): the lepton's
    collinear fraction z, the tau angle theta*, the mass, the ISR multiplicity K,
    the hardest emission's pT and the soft-recoil magnitude bound the boson pT
    (|recoil| <= K pT_max + |soft|) and hence the lepton pT.  Stage B: the rest of
    the recoil, rapidity and tau directions give exact tau momenta; stage C: the
    tau decays with the detector response of the visible products, so that the
    returned events are exactly those passing the lepton and tau_h selection
    (their smearing Gaussians travel in the Truth to the detector).
    """
    det = det or cal.Detector()
    pre = preselection(det)
    f32 = np.float32
    isr = cfg.isr
    u = rng.random((6, n), dtype=f32)
    # --- stage A -----------------------------------------------------------
    z_lep = kin.lepton_z(u[0])
    cos_t = _cos_theta_star(u[1], cfg.angular_1pcos2)
    sin_t = np.sqrt(np.maximum(f32(1.0) - cos_t * cos_t, f32(0.0)))
    mass = _breit_wigner_u(u[2], cfg.mass, cfg.width, cfg.mass_lo, cfg.mass_hi)
    k = _multiplicity_sampler(isr.rate, isr.shape)(u[3])
    soft_r = f32(isr.kt_sigma) * np.sqrt(f32(-2.0) * np.log1p(-u[4]))  # Rayleigh |soft kT|
    vbf = u[5] < f32(cfg.vbf_fraction) if cfg.vbf_fraction > 0 else None
    has = np.flatnonzero(k)
    pt_max = np.zeros(n, dtype=f32)
    # the largest of K emissions: its survival t has (1 - t)^K = v
    with np.errstate(divide="ignore"):
        tail = -np.expm1(np.log(rng.random(has.size, dtype=f32)) / k[has].astype(f32))
    pt_max[has] = kin.emission_pt(tail, isr)
    bound = k * pt_max + soft_r
    tags = None
    if vbf is not None:
        # VBF: the Higgs recoils against the two tag jets instead of ISR
        iv = np.flatnonzero(vbf)
        tags = np.zeros((2, n), dtype=f32)
        tags[:, iv] = rng.gamma(2.0, cfg.vbf_jet_pt_mean / 2.0, (2, iv.size))
        k[iv] = 0
        bound[iv] = tags[0, iv] + tags[1, iv] + soft_r[iv]
    need = _required_boson_pt(z_lep, mass, sin_t, cos_t, pre.lep_pt)
    a = np.flatnonzero(bound * f32(1.0001) + f32(1e-3) >= need)

    # --- stage B: exact recoil, boson and taus for the survivors -------------
    na = a.size
    k_a, z_a, cos_a = k[a], z_lep[a], cos_t[a].astype(np.float64)
    mass_a = mass[a].astype(np.float64)
    event = np.repeat(np.arange(na), k_a)
    first = np.zeros(event.size, dtype=bool)
    first[(np.cumsum(k_a) - k_a)[k_a > 0]] = True
    cap = np.repeat(pt_max[a], k_a).astype(np.float64)
    # the other K - 1 emissions: the spectrum truncated at the hardest one
    span = 1.0 - kin.emission_survival(cap, isr)
    ept = kin.emission_pt(1.0 - rng.random(event.size) * span, isr)
    ept[first] = cap[first]
    ephi = kin.uniform_phi(rng, event.size)
    e_eta = kin.limit_rapidities(rng, rng.standard_normal(event.size) * isr.eta_sigma, ept, 0.0, isr.eta_sigma)
    ec, es = kin.cos_sin(ephi)
    soft_phi = kin.uniform_phi(rng, na)
    sc, ss = kin.cos_sin(soft_phi)
    soft = np.stack([soft_r[a] * sc, soft_r[a] * ss])
    px = -kin.segment_sum(ept * ec, event, na) - soft[0]
    py = -kin.segment_sum(ept * es, event, na) - soft[1]
    partons = Partons(event, ept, e_eta, ephi)
    tag_partons = None
    if tags is not None:
        iv = np.flatnonzero(vbf[a])
        kv = iv.size
        tag_pt = tags[:, a[iv]].astype(np.float64)
        side = np.where(rng.random(kv) < 0.5, 1.0, -1.0)
        tag_eta = np.stack([side, -side]) * np.abs(rng.normal(cfg.vbf_jet_eta, 1.0, (2, kv)))
        tag_eta = kin.limit_rapidities(rng, tag_eta.ravel(), tag_pt.ravel(), cfg.vbf_jet_eta, 1.0,
                                       True).reshape(2, kv)
        tag_phi = rng.uniform(-np.pi, np.pi, (2, kv))
        px[iv] = -(tag_pt * np.cos(tag_phi)).sum(0) - soft[0, iv]
        py[iv] = -(tag_pt * np.sin(tag_phi)).sum(0) - soft[1, iv]
        tag_partons = Partons(np.tile(iv, 2), tag_pt.ravel(), tag_eta.ravel(), tag_phi.ravel())
    y = rng.normal(0.0, cfg.rapidity_sigma, na)
    boson = kin.from_mt_rapidity(px, py, y, mass_a)
    tau1, tau2 = kin.two_body_decay(rng, boson, mass_a, kin.TAU_MASS, kin.TAU_MASS, cos_a)
    pt1, pt2 = kin.pt(tau1), kin.pt(tau2)
    keep = ((z_a * (pt1 + kin.TAU_MASS) + kin.TAU_MASS >= pre.lep_pt)
            & (pt2 + 2.0 * kin.TAU_MASS >= pre.had_pt)
            & (tau1[3] ** 2 <= (pt1 * np.sinh(pre.lep_eta)) ** 2)
            & (tau2[3] ** 2 <= (pt2 * np.sinh(pre.had_eta)) ** 2))
    b = np.flatnonzero(keep)
    m_vis = hadronic_mass(rng, b.size)
    cos_h = rng.random(b.size) * 2.0 - 1.0
    r = (m_vis / kin.TAU_MASS) ** 2
    z_had = 0.5 * ((1.0 + r) + (1.0 - r) * cos_h)
    ok = z_had * (pt2[b] + kin.TAU_MASS) + kin.TAU_MASS >= pre.had_pt
    c = b[ok]

    # --- stage C: tau decays with the lepton, then tau_h, measured and selected --
    z_c = z_a[c].astype(np.float64)
    x = kin.michel_given_z(z_c, rng.random(c.size))
    cos_l = np.clip(2.0 * z_c / x - 1.0, -1.0, 1.0)
    lep, nus = kin.decay_along_flight(rng, tau1[:, c], kin.TAU_MASS, 0.0, kin.TAU_MASS * np.sqrt(np.maximum(1.0 - x, 0.0)), cos_l)
    g_lep = rng.standard_normal(c.size)
    lep_pt = det_module.lepton_response(kin.pt(lep), g_lep, det)
    d = np.flatnonzero((lep_pt > cal.LEP_PT_MIN) & (lep[3] ** 2 < (kin.pt(lep) * np.sinh(cal.LEP_ETA_MAX)) ** 2))
    cd = c[d]
    had, nu = kin.decay_along_flight(rng, tau2[:, cd], kin.TAU_MASS, m_vis[ok][d], 0.0, cos_h[ok][d])
    g_had = rng.standard_normal(d.size)
    had_true = kin.pt(had)
    had_pt = det_module.had_response(had_true, g_had, det)[1]
    e = np.flatnonzero((had_pt > cal.HAD_PT_MIN) & (had[3] ** 2 < (had_true * np.sinh(cal.HAD_ETA_MAX)) ** 2))
    final = cd[e]
    de = d[e]
    keep = np.zeros(na, dtype=bool)
    keep[final] = True
    partons = partons.subset(keep)
    if tag_partons is not None:
        partons = Partons.concat([partons, tag_partons.subset(keep)])
    return Truth(lep[:, de], had[:, e], nus[1:3, de] + nu[1:3, e], partons, soft[:, final],
                 lep_gauss=g_lep[de], had_gauss=g_had[e])


def _cos_theta_star(u, angular_1pcos2: bool):
    """cos theta of the tau at rest: uniform, or (1 + c^2) by inverse CDF
    (c^3/3 + c = 8u/3 - 4/3, Cardano)."""
    if not angular_1pcos2:
        return u * np.float32(2.0) - np.float32(1.0)
    q = np.float32(4.0) * u - np.float32(2.0)
    r = np.sqrt(q * q + np.float32(1.0))
    return np.clip(np.cbrt(q + r) + np.cbrt(q - r), np.float32(-1.0), np.float32(1.0))


def _breit_wigner_u(u, mass, width, lo, hi):
    """Truncated Breit-Wigner from uniforms (inverse CDF, float32)."""
    if width <= 0:
        return np.full(u.shape, mass, dtype=np.float32)
    a = np.arctan(2.0 * (lo - mass) / width)
    b = np.arctan(2.0 * (hi - mass) / width)
    return np.float32(mass) + np.float32(0.5 * width) * np.tan(np.float32(a) + np.float32(b - a) * u)


def production_cos(rng, n, peaking):
    """cos theta* of a pair at rest to the beam, density ~ 1 / (1 - b^2 c^2) with
    b = ``peaking`` (per event, in [0, 1)): the t-channel propagator of
    gg -> t tbar and q qbar -> V V, with b the produced particle's velocity
    (isotropic at threshold, forward-backward peaked at high mass); inverse CDF
    c = tanh(w atanh b) / b, w uniform in [-1, 1]."""
    w = 2.0 * rng.random(n) - 1.0
    b = np.clip(peaking, 1e-6, 1.0 - 1e-9)
    return np.tanh(w * np.arctanh(b)) / b


def gg_ttbar_cos(rng, beta):
    """cos theta* of the top in the t tbar rest frame for g g -> t tbar at
    leading order (Combridge 1979): with tau_1,2 = (1 -+ beta c)/2 and
    rho = 1 - beta^2, |M|^2 ~ (1 / (6 tau_1 tau_2) - 3/8)
    (tau_1^2 + tau_2^2 + rho - rho^2 / (4 tau_1 tau_2)), forward-backward
    peaked as beta -> 1 (the t-channel top propagator).  Sampled by rejection
    from the 1 / (1 - beta^2 c^2) envelope of :func:`production_cos`; g g is
    ~90% of t tbar production at 13 TeV."""
    beta = np.clip(np.asarray(beta, dtype=np.float64), 1e-6, 1.0 - 1e-9)
    out = np.empty(beta.size)
    todo = np.arange(beta.size)
    while todo.size:
        b = beta[todo]
        c = production_cos(rng, todo.size, b)
        x = (b * c) ** 2
        rho = 1.0 - b * b
        # |M|^2 (1 - x), increasing in x; its maximum is at x = beta^2
        g = (7.0 + 9.0 * x) * (0.5 * (1.0 + x) + rho - rho * rho / (1.0 - x))
        g_max = (7.0 + 9.0 * b * b) * 0.5 * (1.0 + b * b)
        ok = rng.random(todo.size) * g_max <= g
        out[todo[ok]] = c[ok]
        todo = todo[~ok]
    return out


def pair_velocity(m, m1, m2):
    """Velocity of daughter 1 in a two-body decay m -> m1 m2 at rest."""
    s = m * m
    lam = np.maximum((s - (m1 + m2) ** 2) * (s - (m1 - m2) ** 2), 0.0)
    return np.sqrt(lam) / (s + m1 * m1 - m2 * m2)


def system_rapidity(rng, m, pdf_power):
    """Rapidity of a system of mass m produced from two partons at x_1,2 =
    sqrt(tau) e^(+-y), tau = m^2 / s: with parton densities ~ x^-a (1 - x)^p the
    x^-a factors cancel (x_1 x_2 = tau), which leaves the density
    ((1 - sqrt(tau) e^y)(1 - sqrt(tau) e^-y))^p on |y| < ln(1 / sqrt(tau)):
    flat while both x are small, falling as one approaches 1 (the kinematic
    limit).  Sampled by rejection from the uniform; p ~ 5 for gluons."""
    a = np.minimum(np.asarray(m, dtype=np.float64) / cal.SQRT_S, 0.5)
    y_max = -np.log(a)
    out = np.empty(a.size)
    todo = np.arange(a.size)
    while todo.size:
        at, ym = a[todo], y_max[todo]
        y = (2.0 * rng.random(todo.size) - 1.0) * ym
        ey = np.exp(y)
        density = ((1.0 - at * ey) * (1.0 - at / ey) / (1.0 - at) ** 2) ** pdf_power
        ok = rng.random(todo.size) <= density
        out[todo[ok]] = y[ok]
        todo = todo[~ok]
    return out


def _pair(rng, n, isr, m1, m2, excess_shape, excess_scale, pdf_power, peaking):
    """A pair of masses m1, m2 from the hard process: m = m1 + m2 + Gamma
    excess, rapidity of :func:`system_rapidity`, recoiling against ISR,
    production angle of :func:`production_cos` (``peaking`` None: g g -> t tbar,
    :func:`gg_ttbar_cos`).  Returns (ISR partons, soft, daughter 1, daughter 2)."""
    m = m1 + m2 + rng.gamma(excess_shape, excess_scale, n)
    partons, soft, px, py = isr_recoil(rng, n, isr, m, m1 + m2)
    system = kin.from_mt_rapidity(px, py, system_rapidity(rng, m, pdf_power), m)
    beta = pair_velocity(m, m1, m2)
    cos = gg_ttbar_cos(rng, beta) if peaking is None else production_cos(rng, n, peaking * beta)
    d1, d2 = kin.two_body_decay(rng, system, m, m1, m2, cos_theta=cos)
    return partons, soft, d1, d2


def _w_mass(rng, n):
    return kin.breit_wigner(rng, n, cal.W_MASS, cal.W_WIDTH, 65.0, 95.0)


def _z_mass(rng, n):
    return kin.breit_wigner(rng, n, cal.Z_MASS, cal.Z_WIDTH, 70.0, 110.0)


def _quarks(rng, parent, mass, index, top=None):
    """V -> q q' (massless) as partons of the events ``index``."""
    q1, q2 = _w_decay(rng, parent, mass, 0.0, top)
    return [Partons.from_p4(index, q1, LIGHT_QUARK), Partons.from_p4(index, q2, LIGHT_QUARK)]


def _hadronic_tau_from(rng, parent, mass, top=None):
    """V -> tau nu, tau -> h nu: the visible tau_h and the two neutrinos' (px, py)."""
    tau, nu_w = _w_decay(rng, parent, mass, kin.TAU_MASS, top)
    had, nu_tau = hadronic_tau(rng, tau)
    return had, nu_w[1:3] + nu_tau[1:3]


def final_state_radiation(rng, quarks: Partons, fsr: cal.FSR) -> Partons:
    """The quarks after their out-of-cone gluon emissions, and the gluons
    (calibration.FSR): per quark a Poisson number (at most 3) with mean
    alpha ln(r_max / r_min) ln(z_max / z_min), z and R log-uniform, each
    gluon's pT taken from the quark (the transverse momentum is conserved)."""
    if fsr.alpha <= 0 or quarks.pt.size == 0:
        return quarks
    z_min = np.minimum(fsr.pt_min / np.maximum(quarks.pt, 1e-9), fsr.z_max)
    log_z = np.log(fsr.z_max / z_min)
    log_r = np.log(fsr.r_max / fsr.r_min)
    # Poisson counts by inverse CDF, at most 3 (P(> 3) < 1e-3 for the means here)
    mean = fsr.alpha * log_r * log_z
    u = rng.random(mean.size) * np.exp(mean)  # u e^mean against the partial sums of mean^k / k!
    term = mean.copy()
    cum = 1.0 + term
    count = (u >= 1.0).astype(np.int64)
    for k in (2, 3):
        count += u >= cum
        term *= mean / k
        cum += term
    src = np.repeat(np.arange(quarks.pt.size), count)
    m = src.size
    z = z_min[src] * np.exp(rng.random(m) * log_z[src])
    dr = fsr.r_min * np.exp(rng.random(m) * log_r)
    c, s = kin.cos_sin(kin.uniform_phi(rng, m))
    g_pt = z * quarks.pt[src]
    g_eta = quarks.eta[src] + dr * c
    g_phi = np.mod(quarks.phi[src] + dr * s + np.pi, 2.0 * np.pi) - np.pi
    # the quarks' pT vectors minus their gluons'
    gc, gs = kin.cos_sin(g_phi)
    qc, qs = kin.cos_sin(quarks.phi)
    n = quarks.pt.size
    qx = quarks.pt * qc - kin.segment_sum(g_pt * gc, src, n)
    qy = quarks.pt * qs - kin.segment_sum(g_pt * gs, src, n)
    out = Partons(quarks.event, np.hypot(qx, qy), quarks.eta.copy(), np.arctan2(qy, qx), quarks.kind)
    return Partons.concat([out, Partons(quarks.event[src], g_pt, g_eta, g_phi)])


def _may_pass(p4, pt_min, sinh_eta_max):
    """Truth-level visible objects that can pass a pT / |eta| preselection
    (the bounds of :func:`preselection`: 6 sigma of the smearing)."""
    pt = kin.pt(p4)
    return (pt >= pt_min) & (p4[3] * p4[3] <= (pt * sinh_eta_max) ** 2)


def ttbar(rng, n, cfg: cal.TTbar, det: cal.Detector | None = None) -> Truth:
    """t tbar -> (b W -> b l nu)(b W -> b tau_h nu), or (b l nu)(b q q') with one
    of the jets faking the tau_h (chosen at reconstruction).  Returns the
    candidates whose lepton (and real tau_h) can pass the preselection: the
    other top's decay, the quarks and the radiation are made for those only
    (~45% of the candidates survive the lepton)."""
    det = det or cal.Detector()
    pre = preselection(det)
    m_t = kin.breit_wigner(rng, (2, n), cal.TOP_MASS, cal.TOP_WIDTH, 165.0, 180.0)
    isr, soft, t1, t2 = _pair(rng, n, cfg.isr, m_t[0], m_t[1], cfg.mass_excess_shape,
                              cfg.mass_excess_scale, cfg.pdf_power, None)
    # the leptonic top first: W -> l nu (helicity angles), then the lepton's preselection
    mw1 = _w_mass(rng, n)
    w1, b1 = kin.two_body_decay(rng, t1, m_t[0], mw1, cal.B_MASS)
    lep, inv = w_to_lepton(rng, w1, mw1, t1)
    i1 = np.flatnonzero(_may_pass(lep, pre.lep_pt, np.sinh(pre.lep_eta)))
    n1 = i1.size
    t2, mt2, b1, lep, inv = t2[:, i1], m_t[1, i1], b1[:, i1], lep[:, i1], inv[:, i1]
    mw2 = _w_mass(rng, n1)
    w2, b2 = kin.two_body_decay(rng, t2, mt2, mw2, cal.B_MASS)
    fake = rng.random(n1) < cfg.fake_share(det)
    real = np.flatnonzero(~fake)
    had = np.zeros((4, n1))
    had[:, real], nus = _hadronic_tau_from(rng, w2[:, real], mw2[real], t2[:, real])
    inv[:, real] += nus
    # the real tau_h's preselection; fakes are decided at reconstruction
    i2 = np.flatnonzero(fake | _may_pass(had, pre.had_pt, np.sinh(pre.had_eta)))
    n2 = i2.size
    lep, had, inv, fake = lep[:, i2], had[:, i2], inv[:, i2], fake[i2]
    idx = np.arange(n2)
    hard = [Partons.from_p4(idx, b1[:, i2], B_QUARK), Partons.from_p4(idx, b2[:, i2], B_QUARK)]
    f = np.flatnonzero(fake)
    hard += _quarks(rng, w2[:, i2[f]], mw2[i2[f]], f, t2[:, i2[f]])
    hard = final_state_radiation(rng, Partons.concat(hard), cfg.fsr)
    keep = np.zeros(n, dtype=bool)
    keep[i1[i2]] = True
    return Truth(lep, had, inv, Partons.concat([isr.subset(keep), hard]), soft[:, i1[i2]], fake=fake)


def diboson(rng, n, cfg: cal.Diboson, det: cal.Detector | None = None) -> Truth:
    """q qbar -> W W / W Z / Z Z giving one lepton and one tau_h candidate (the
    channels of calibration.Diboson.channel_shares): V1 gives the lepton
    (W -> l nu, or Z -> tau tau -> l tau_h), V2 the tau_h (W -> tau_h nu), or
    jets (W / Z -> q q', one of the jets may fake the tau_h), or nothing
    visible (Z -> nu nu).  Returns the candidates whose lepton can pass the
    preselection (V2 decays and radiation are made for those only)."""
    det = det or cal.Detector()
    pre = preselection(det)
    names, shares = cfg.channel_shares(det)
    channel = rng.choice(len(names), size=n, p=shares)
    info = np.array([cal.DIBOSON_CHANNELS[name] for name in names])  # (v1, v2) codes
    v1_code, v2_code = info[channel, 0], info[channel, 1]
    m1 = np.where(v1_code == cal.V_W_LEP, _w_mass(rng, n), _z_mass(rng, n))
    m2 = np.where((v2_code == cal.V_W_TAUH) | (v2_code == cal.V_W_QQ), _w_mass(rng, n), _z_mass(rng, n))
    isr, soft, v1, v2 = _pair(rng, n, cfg.isr, m1, m2, cfg.mass_excess_shape,
                              cfg.mass_excess_scale, cfg.pdf_power, cfg.peaking)
    lep = np.zeros((4, n))
    had = np.zeros((4, n))
    inv = np.zeros((2, n))
    i = np.flatnonzero(v1_code == cal.V_W_LEP)
    lep[:, i], inv[:, i] = w_to_lepton(rng, v1[:, i], m1[i])
    i = np.flatnonzero(v1_code == cal.V_Z_TAUTAU)
    lep[:, i], had[:, i], inv[:, i] = tau_pair(rng, v1[:, i], m1[i], angular_1pcos2=True)
    k = np.flatnonzero(_may_pass(lep, pre.lep_pt, np.sinh(pre.lep_eta)))
    lep, had, inv, v2, m2, v2_code, channel = lep[:, k], had[:, k], inv[:, k], v2[:, k], m2[k], v2_code[k], channel[k]
    i = np.flatnonzero(v2_code == cal.V_W_TAUH)
    had[:, i], nus = _hadronic_tau_from(rng, v2[:, i], m2[i])
    inv[:, i] += nus
    i = np.flatnonzero(v2_code == cal.V_Z_NUNU)
    inv[:, i] += v2[1:3, i]
    i = np.flatnonzero((v2_code == cal.V_W_QQ) | (v2_code == cal.V_Z_QQ))
    hard = final_state_radiation(rng, Partons.concat(_quarks(rng, v2[:, i], m2[i], i)), cfg.fsr)
    fake = np.array([cal.DIBOSON_FAKE[name] for name in names])[channel]
    keep = np.zeros(n, dtype=bool)
    keep[k] = True
    return Truth(lep, had, inv, Partons.concat([isr.subset(keep), hard]), soft[:, k], fake=fake)


def generate_truth(name: str, rng, n: int, cfg, det: cal.Detector | None = None) -> Truth:
    """Truth of the candidates of a batch of ``n`` that may pass the selection
    of ``det`` (default detector if None)."""
    if name in ("htautau", "ztautau"):
        return resonance(rng, n, cfg, det)
    if name == "ttbar":
        return ttbar(rng, n, cfg, det)
    if name == "diboson":
        return diboson(rng, n, cfg, det)
    raise ValueError(f"the simulator has no process {name!r}")
