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
        eta = None if self.eta is None else self.eta[keep]
        return Partons(new_index[self.event[keep]], self.pt[keep], eta, self.phi[keep])

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
    lep_gauss: np.ndarray | None = None
    had_gauss: np.ndarray | None = None
    """Standard-normal draws of the detector smearing, when the generator drew
    them already to apply the selection early (None: the detector draws them)."""


# --- building blocks ---------------------------------------------------------
def isr_recoil(rng, n, isr: cal.ISR):
    """ISR emissions and the (px, py) recoil they give the hard system."""
    counts = _multiplicity_sampler(isr.rate, isr.shape)(rng.random(n))
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
    # the largest of K Pareto pTs: CDF (1 - (pt0/x)^alpha)^K = v
    with np.errstate(divide="ignore"):
        tail = -np.expm1(np.log(rng.random(has.size, dtype=f32)) / k[has].astype(f32))
    pt_max[has] = f32(isr.pt0) * tail ** f32(-1.0 / isr.alpha)
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
    # the other K - 1 emissions: Pareto truncated at the hardest one
    span = 1.0 - (isr.pt0 / cap) ** isr.alpha
    ept = isr.pt0 * (1.0 - rng.random(event.size) * span) ** (-1.0 / isr.alpha)
    ept[first] = cap[first]
    ephi = kin.uniform_phi(rng, event.size)
    ec, es = kin.cos_sin(ephi)
    soft_phi = kin.uniform_phi(rng, na)
    sc, ss = kin.cos_sin(soft_phi)
    soft = np.stack([soft_r[a] * sc, soft_r[a] * ss])
    px = -kin.segment_sum(ept * ec, event, na) - soft[0]
    py = -kin.segment_sum(ept * es, event, na) - soft[1]
    partons = Partons(event, ept, None, ephi)  # ISR eta drawn for the final events only
    tag_partons = None
    if tags is not None:
        iv = np.flatnonzero(vbf[a])
        kv = iv.size
        tag_pt = tags[:, a[iv]].astype(np.float64)
        side = np.where(rng.random(kv) < 0.5, 1.0, -1.0)
        tag_eta = np.stack([side, -side]) * np.abs(rng.normal(cfg.vbf_jet_eta, 1.0, (2, kv)))
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
    partons.eta = rng.standard_normal(partons.pt.size) * isr.eta_sigma
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


def generate_truth(name: str, rng, n: int, cfg, det: cal.Detector | None = None) -> Truth:
    """Truth of the candidates of a batch of ``n`` that may pass the selection
    of ``det`` (default detector if None)."""
    if name in ("htautau", "ztautau"):
        return resonance(rng, n, cfg, det)
    if name == "ttbar":
        return ttbar(rng, n, cfg)
    if name == "diboson":
        return diboson(rng, n, cfg)
    raise ValueError(f"the simulator has no process {name!r}")
