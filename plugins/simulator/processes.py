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

from . import calibration as cal
from . import kinematics as kin


@dataclass
class Partons:
    """Flat (ragged) list of hadronic partons; ``event`` indexes the batch."""

    event: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray

    @staticmethod
    def concat(parts: list["Partons"]) -> "Partons":
        return Partons(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("event", "pt", "eta", "phi")))

    def subset(self, keep_events: np.ndarray) -> "Partons":
        """Partons of the events where ``keep_events`` (bool, per event) is true, re-indexed."""
        new_index = np.cumsum(keep_events) - 1
        keep = keep_events[self.event]
        return Partons(new_index[self.event[keep]], self.pt[keep], self.eta[keep], self.phi[keep])

    @staticmethod
    def from_p4(event, p4) -> "Partons":
        return Partons(event, kin.pt(p4), kin.eta(p4), kin.phi(p4))


@dataclass
class Truth:
    lep: np.ndarray  # (4, n) visible lepton
    had: np.ndarray  # (4, n) visible hadronic tau (or fake jet, after its response)
    invisible: np.ndarray  # (2, n) neutrino px, py
    partons: Partons
    soft: np.ndarray  # (2, n) unclustered recoil px, py


# --- building blocks ---------------------------------------------------------
def isr_recoil(rng, n, isr: cal.ISR):
    """ISR emissions and the (px, py) recoil they give the hard system."""
    counts = _multiplicity_sampler(isr.rate, isr.shape)(rng, n)
    event = np.repeat(np.arange(n), counts)
    m = event.size
    pt = kin.pareto(rng, m, isr.pt0, isr.alpha)
    phi = kin.uniform_phi(rng, m)
    eta = rng.standard_normal(m) * isr.eta_sigma
    soft = rng.standard_normal((2, n)) * isr.kt_sigma
    c, s = kin.cos_sin(phi)
    px = -kin.segment_sum(pt * c, event, n) - soft[0]
    py = -kin.segment_sum(pt * s, event, n) - soft[1]
    return Partons(event, pt, eta, phi), soft, px, py


@functools.lru_cache(maxsize=64)
def _multiplicity_sampler(mean: float, shape: float):
    return kin.discrete_sampler(kin.negative_binomial_pmf(mean, shape))


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
        m_vis[sel] = kin.breit_wigner(rng, int(sel.sum()), mass, width, lo, hi)
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


def w_to_lepton(rng, w, w_mass):
    """W -> l nu, a share of it through W -> tau nu, tau -> l nu nu."""
    lep, nu = kin.two_body_decay(rng, w, w_mass, 0.0, 0.0)
    via_tau = rng.random(w.shape[1]) < cal.TAU_LEPTONIC_SHARE_W
    if via_tau.any():
        tau, nu_w = kin.two_body_decay(rng, w[:, via_tau], w_mass[via_tau], kin.TAU_MASS, 0.0)
        lep_t, nus = leptonic_tau(rng, tau)
        lep[:, via_tau] = lep_t
        nu[:, via_tau] = nu_w + nus
    return lep, nu[1:3]


# --- processes -----------------------------------------------------------------
def resonance(rng, n, cfg: cal.Resonance) -> Truth:
    """gg/qq -> H/Z (+ ISR), or VBF qq -> qqH, then -> tau tau -> l tau_h."""
    partons, soft, px, py = isr_recoil(rng, n, cfg.isr)
    if cfg.vbf_fraction > 0:
        vbf = np.flatnonzero(rng.random(n) < cfg.vbf_fraction)
        k = vbf.size
        tag_pt = rng.gamma(2.0, cfg.vbf_jet_pt_mean / 2.0, (2, k))
        side = np.where(rng.random(k) < 0.5, 1.0, -1.0)
        tag_eta = np.stack([side, -side]) * np.abs(rng.normal(cfg.vbf_jet_eta, 1.0, (2, k)))
        tag_phi = rng.uniform(-np.pi, np.pi, (2, k))
        # VBF events: the Higgs recoils against the tag jets instead of ISR
        px[vbf] = -(tag_pt * np.cos(tag_phi)).sum(0) - soft[0, vbf]
        py[vbf] = -(tag_pt * np.sin(tag_phi)).sum(0) - soft[1, vbf]
        keep = ~np.isin(partons.event, vbf)
        partons = Partons.concat([
            Partons(partons.event[keep], partons.pt[keep], partons.eta[keep], partons.phi[keep]),
            Partons(np.tile(vbf, 2), tag_pt.ravel(), tag_eta.ravel(), tag_phi.ravel()),
        ])
    mass = kin.breit_wigner(rng, n, cfg.mass, cfg.width, cfg.mass_lo, cfg.mass_hi)
    y = rng.normal(0.0, cfg.rapidity_sigma, n)
    boson = kin.from_mt_rapidity(px, py, y, mass)
    tau1, tau2 = tau_directions(rng, boson, mass, cfg.angular_1pcos2)
    # Early rejection (for speed only): the visible decay products are collinear
    # with their tau within ~m_tau/p, so events whose taus are far outside the
    # acceptance or far below the thresholds can never be selected.
    keep = _may_pass(tau1, PRESELECT_LEP_PT) & _may_pass(tau2, PRESELECT_HAD_PT)
    tau1, tau2, soft = tau1[:, keep], tau2[:, keep], soft[:, keep]
    partons = partons.subset(keep)
    # Decay variables at rest drawn first: in the collinear limit the visible
    # product carries z = (E* + p* cos) / m_tau of its tau's momentum, which
    # rejects the many events failing the pT thresholds before the boosts.
    k = tau1.shape[1]
    x = kin.michel_fraction(rng, k)
    cos_l = rng.random(k) * 2.0 - 1.0
    m_vis = hadronic_mass(rng, k)
    cos_h = rng.random(k) * 2.0 - 1.0
    r = (m_vis / kin.TAU_MASS) ** 2
    z_lep = 0.5 * x * (1.0 + cos_l)
    z_had = 0.5 * ((1.0 + r) + (1.0 - r) * cos_h)
    keep = (z_lep * kin.pt(tau1) > PRESELECT_LEP_PT) & (z_had * kin.pt(tau2) > PRESELECT_HAD_PT)
    tau1, tau2, soft = tau1[:, keep], tau2[:, keep], soft[:, keep]
    partons = partons.subset(keep)
    lep, nus = leptonic_tau(rng, tau1, x[keep], cos_l[keep])
    had, nu = hadronic_tau(rng, tau2, m_vis[keep], cos_h[keep])
    return Truth(lep, had, nus[1:3] + nu[1:3], partons, soft)


PRESELECT_ETA = 2.9
PRESELECT_LEP_PT = 0.85 * cal.LEP_PT_MIN
PRESELECT_HAD_PT = 0.55 * cal.HAD_PT_MIN
"""Loose bounds below which a visible product cannot pass the selection: the
lepton resolution is 2% (0.85 is > 7 sigma), the tau_h response x resolution
(1.12 x (1 + 4 x 0.13)) stays well inside 1/0.55."""


def _may_pass(tau, pt_min):
    pt2 = tau[1] * tau[1] + tau[2] * tau[2]
    # |eta| < a  <=>  |pz| < pT sinh(a)
    return (pt2 > pt_min * pt_min) & (tau[3] * tau[3] < pt2 * np.sinh(PRESELECT_ETA) ** 2)


def _top_pair(rng, n, cfg):
    partons, soft, px, py = isr_recoil(rng, n, cfg.isr)
    m_t = kin.breit_wigner(rng, (2, n), cal.TOP_MASS, cal.TOP_WIDTH, 165.0, 180.0)
    m_tt = m_t.sum(0) + rng.gamma(cfg.mass_excess_shape, cfg.mass_excess_scale, n)
    system = kin.from_mt_rapidity(px, py, rng.normal(0.0, cfg.rapidity_sigma, n), m_tt)
    t1, t2 = kin.two_body_decay(rng, system, m_tt, m_t[0], m_t[1])
    return partons, soft, (t1, t2), m_t


def ttbar(rng, n, cfg: cal.TTbar) -> Truth:
    """t tbar -> (b W -> b l nu)(b W -> b tau_h nu | b q q' with a q faking tau_h)."""
    partons, soft, tops, m_t = _top_pair(rng, n, cfg)
    idx = np.arange(n)
    decays = []
    for t, mt in zip(tops, m_t):
        m_w = kin.breit_wigner(rng, n, cal.W_MASS, cal.W_WIDTH, 65.0, 95.0)
        w, b = kin.two_body_decay(rng, t, mt, m_w, cal.B_MASS)
        decays.append((w, m_w, b))
    (w1, mw1, b1), (w2, mw2, b2) = decays
    lep, inv = w_to_lepton(rng, w1, mw1)
    fake = rng.random(n) < cfg.fake_fraction
    q1, q2 = kin.two_body_decay(rng, w2, mw2, 0.0, 0.0)
    tau, nu_w = kin.two_body_decay(rng, w2, mw2, kin.TAU_MASS, 0.0)
    had_real, nu_tau = hadronic_tau(rng, tau)
    response = rng.normal(cfg.fake_response, cfg.fake_response_sigma, n).clip(0.3, 1.5)
    had = np.where(fake, q1 * response, had_real)
    inv = inv + np.where(fake, 0.0, nu_w[1:3] + nu_tau[1:3])
    hard = Partons.concat([
        Partons.from_p4(idx, b1),
        Partons.from_p4(idx, b2),
        Partons.from_p4(idx[fake], q2[:, fake]),
    ])
    # the fake's lost energy (1 - response) stays in the hadronic recoil
    lost = q1[1:3] * (1.0 - response) * fake
    return Truth(lep, had, inv, Partons.concat([partons, hard]), soft + lost)


def diboson(rng, n, cfg: cal.Diboson) -> Truth:
    """q qbar -> WW / WZ / ZZ giving one lepton and one tau_h (see calibration.Diboson)."""
    partons, soft, px, py = isr_recoil(rng, n, cfg.isr)
    names = [c[0] for c in cfg.channels]
    probs = np.array([c[1] for c in cfg.channels], dtype=float)
    channel = rng.choice(len(names), size=n, p=probs / probs.sum())
    m1 = np.where(channel == names.index("WW"),
                  kin.breit_wigner(rng, n, cal.W_MASS, cal.W_WIDTH, 65.0, 95.0),
                  kin.breit_wigner(rng, n, cal.Z_MASS, cal.Z_WIDTH, 70.0, 110.0))
    m2 = np.where(channel == names.index("ZZ"),
                  kin.breit_wigner(rng, n, cal.Z_MASS, cal.Z_WIDTH, 70.0, 110.0),
                  kin.breit_wigner(rng, n, cal.W_MASS, cal.W_WIDTH, 65.0, 95.0))
    m_vv = m1 + m2 + rng.gamma(cfg.mass_excess_shape, cfg.mass_excess_scale, n)
    system = kin.from_mt_rapidity(px, py, rng.normal(0.0, cfg.rapidity_sigma, n), m_vv)
    v1, v2 = kin.two_body_decay(rng, system, m_vv, m1, m2)

    ww = channel == names.index("WW")
    # WW: V1 = W -> l nu, V2 = W -> tau_h nu
    lep_w, inv_w = w_to_lepton(rng, v1, m1)
    tau, nu_w = kin.two_body_decay(rng, v2, m2, kin.TAU_MASS, 0.0)
    had_w, nu_t = hadronic_tau(rng, tau)
    # WZ / ZZ: V1 = Z -> tau tau -> l tau_h; V2 = W -> q q' (WZ) or Z -> nu nu (ZZ)
    lep_z, had_z, inv_z = tau_pair(rng, v1, m1, angular_1pcos2=True)
    q1, q2 = kin.two_body_decay(rng, v2, m2, 0.0, 0.0)

    lep = np.where(ww, lep_w, lep_z)
    had = np.where(ww, had_w, had_z)
    zz = channel == names.index("ZZ")
    inv = np.where(ww, inv_w + nu_w[1:3] + nu_t[1:3], inv_z + np.where(zz, v2[1:3], 0.0))
    wz = channel == names.index("WZ")
    idx = np.flatnonzero(wz)
    hard = Partons.concat([Partons.from_p4(idx, q1[:, wz]), Partons.from_p4(idx, q2[:, wz])])
    return Truth(lep, had, inv, Partons.concat([partons, hard]), soft)


def generate_truth(name: str, rng, n: int, cfg) -> Truth:
    if name in ("htautau", "ztautau"):
        return resonance(rng, n, cfg)
    if name == "ttbar":
        return ttbar(rng, n, cfg)
    if name == "diboson":
        return diboson(rng, n, cfg)
    raise ValueError(f"the simulator has no process {name!r}")
