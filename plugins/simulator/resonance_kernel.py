"""The fused H/Z -> tau tau -> l tau_h kernel: truth, detector and selection per candidate.

Only ~10% (Z) / ~23% (H) of the candidates are selected, so the kernel walks
the candidates once and drops each as soon as an *exact* bound shows it can
never pass (see :mod:`.resonance` for the bounds); the survivors get the rest of
their truth, their detector response and their PRI_ columns in the same pass.
Nothing is kept for rejected candidates, there are no temporaries per stage,
and everything after the first stage draws only what the candidate still needs.

With ``prune=False`` no candidate is dropped early: every one is completed and
the selected ones whose early bound said "reject" are counted (must be zero:
tests/test_simulator.py), which checks that the bounds are conservative.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import jets
from .draws import RESERVE, refill

TAU_MASS = 1.77686
TWO_PI = 2.0 * math.pi

# the kernel's float parameters, packed into one array (see resonance.kernel_parameters)
PARAMETERS = (
    "lep_pre", "had_pre", "sinh_lep_pre_eta", "sinh_had_pre_eta", "lep_pt_min", "had_pt_min",
    "sinh_lep_eta", "sinh_had_eta", "lep_resolution", "had_scale", "had_resolution",
    "had_stochastic", "jet_scale", "jet_noise", "jet_stochastic", "jet_constant", "jet_pt_min",
    "jet_eta_max", "soft_response", "soft_noise", "pileup_shape", "pt0", "alpha", "isr_eta_sigma",
    "rapidity_sigma", "vbf_fraction", "vbf_jet_pt_mean", "vbf_jet_eta",
)
(LEP_PRE, HAD_PRE, SINH_LEP_PRE_ETA, SINH_HAD_PRE_ETA, LEP_PT_MIN, HAD_PT_MIN, SINH_LEP_ETA,
 SINH_HAD_ETA, LEP_RES, HAD_SCALE, HAD_RES, HAD_STOCH, JET_SCALE, JET_NOISE, JET_STOCH,
 JET_CONST, JET_PT_MIN, JET_ETA_MAX, SOFT_RESPONSE, SOFT_NOISE, PILEUP_SHAPE, PT0, ALPHA,
 ISR_ETA_SIGMA, RAPIDITY_SIGMA, VBF_FRACTION, VBF_PT_MEAN, VBF_ETA) = range(len(PARAMETERS))

ROWS = 18
LEP_PY, HAD_PY = 16, 17
"""Kernel block: the PRI_ rows, except lep/had eta rows hold pz/pT, phi rows px,
rows 16/17 py, and the MET rows (px, py); see finish_block."""

MAX_PARTONS = 64
"""Partons per event: at most 40 ISR emissions (the multiplicity table's end) or two tags."""


@numba.njit(cache=True)
def tau_pt_bound(boson_pt, mass, sin_t, cos_t):
    """Largest tau pT for a boson of transverse momentum up to ``boson_pt`` (any
    rapidity) whose tau is at theta* to the beam at rest; increasing in pT_B.

    The pure boost gives p_T = |p* n_T + K b_T|, K = gamma^2/(gamma+1) p* (b.n) +
    gamma E*, with gamma |b_T| = pT_B/m, |b_T| <= pT_B/m_T, |b.n| <= |b_T| sin +
    |cos| and p* <= E* = m/2:  p_T <= (m sin + pT_B (1 + |cos|) + pT_B^2 sin/m_T)/2.
    (The earlier (m_T sin + pT_B)/2 holds only for a boson at zero rapidity: a
    boost along a longitudinally moving boson turns longitudinal momentum into
    transverse, so it dropped ~1 in 10^5 selectable VBF Higgs events.)
    """
    mt = math.sqrt(mass * mass + boson_pt * boson_pt)
    return 0.5 * (mass * sin_t + boson_pt * (1.0 + abs(cos_t)) + boson_pt * boson_pt * sin_t / mt)


@numba.njit(cache=True)
def visible_pt_bound(z, tau_pt):
    """Largest pT of a visible product carrying the collinear fraction z of a tau."""
    return z * (tau_pt + TAU_MASS) + TAU_MASS


@numba.njit(cache=True)
def lepton_pt(true_pt, gauss, resolution):
    return true_pt * max(1.0 + resolution * gauss, 0.05)


@numba.njit(cache=True)
def had_raw_pt(true_pt, gauss, stochastic, constant):
    """Uncalibrated tau_h pT (sigma/pT = S/sqrt(pT) (+) C); the calibrated one is
    had_scale times it.  Increasing in the true pT for any fixed ``gauss``."""
    sigma = math.sqrt(stochastic * stochastic / max(true_pt, 1.0) + constant * constant)
    return true_pt * max(1.0 + sigma * gauss, 0.05)


@numba.njit(cache=True)
def azimuth(u):
    """phi = 2 pi u - pi and its (cos, sin) evaluated in float32 (as
    kinematics.cos_sin: ~2x cheaper, 1e-7 is far below any resolution)."""
    phi = TWO_PI * u - math.pi
    f = np.float32(phi)
    return phi, np.float64(math.cos(f)), np.float64(math.sin(f))


@numba.njit(cache=True)
def michel_given_z(z, v):
    """Michel fraction x given the collinear fraction z: density ~ x (3 - 2x) on
    [z, 1], CDF inverted by 6 safeguarded Newton steps (as kinematics.michel_given_z)."""
    gz = 3.0 * z * z - (4.0 / 3.0) * z ** 3
    target = gz + v * ((3.0 - 4.0 / 3.0) - gz)
    x = z + v * (1.0 - z)
    for _ in range(6):
        d = 2.0 * x * (3.0 - 2.0 * x)
        x = min(max(x - (3.0 * x * x - (4.0 / 3.0) * x ** 3 - target) / max(d, 1e-12), z), 1.0)
    return x


@numba.njit(cache=True)
def decay_along_flight(e, px, py, pz, m_parent, m1, m2, cos_t, c, s):
    """Daughter 1 of a two-body decay at ``cos_t`` to the parent's flight direction
    at rest, azimuth (c, s) = (cos, sin); as kinematics.decay_along_flight."""
    ss = m_parent * m_parent
    pstar = math.sqrt(max((ss - (m1 + m2) ** 2) * (ss - (m1 - m2) ** 2), 0.0)) / (2.0 * m_parent)
    e1 = (ss + m1 * m1 - m2 * m2) / (2.0 * m_parent)
    p = math.sqrt(px * px + py * py + pz * pz)
    gamma, bg = e / m_parent, p / m_parent
    inv = 1.0 / max(p, 1e-300)
    ux, uy, uz = px * inv, py * inv, pz * inv
    sign = 1.0 if uz >= 0.0 else -1.0
    a = -1.0 / (sign + uz)
    b = ux * uy * a
    along = gamma * pstar * cos_t + bg * e1
    perp = pstar * math.sqrt(max(1.0 - cos_t * cos_t, 0.0))
    pc, ps = perp * c, perp * s
    return (gamma * e1 + bg * pstar * cos_t,
            along * ux + pc * (1.0 + sign * ux * ux * a) + ps * b,
            along * uy + pc * (sign * b) + ps * (sign + uy * uy * a),
            along * uz - pc * (sign * ux) - ps * uy)


@numba.njit(cache=True)
def resonance_events(rng, z_lep, cos_t, mass, k_isr, pt_max, soft_r, u_vbf, par, modes,
                     pool, prune):
    """Kernel block (ROWS, m) of the selected events among the candidates, and
    the number of selected events an early bound would have dropped (0)."""
    n = z_lep.size
    # one slot per candidate: only the pages of the rows' first m entries get
    # touched, and no reallocation (reassigning an array in the loop costs
    # reference counting on every iteration: 3x slower)
    out = np.empty((ROWS, n))
    m = 0
    violations = 0
    ept = np.empty(MAX_PARTONS)
    ec = np.empty(MAX_PARTONS)
    es = np.empty(MAX_PARTONS)
    peta = np.empty(MAX_PARTONS)
    pphi = np.empty(MAX_PARTONS)
    # scalars only from here on: a helper taking an array is a real call with
    # reference counting once the kernel is too big for LLVM to inline it
    pt0, alpha = par[PT0], par[ALPHA]
    lep_pre, lep_res, lep_min = par[LEP_PRE], par[LEP_RES], par[LEP_PT_MIN]
    had_scale, had_stoch, had_res, had_min = par[HAD_SCALE], par[HAD_STOCH], par[HAD_RES], par[HAD_PT_MIN]
    sinh_lep_pre, sinh_had_pre = par[SINH_LEP_PRE_ETA], par[SINH_HAD_PRE_ETA]
    sinh_lep, sinh_had = par[SINH_LEP_ETA], par[SINH_HAD_ETA]
    jet_scale, jet_noise, jet_stoch, jet_const = par[JET_SCALE], par[JET_NOISE], par[JET_STOCH], par[JET_CONST]
    jet_min, jet_eta_max, isr_eta_sigma = par[JET_PT_MIN], par[JET_ETA_MAX], par[ISR_ETA_SIGMA]
    soft_response, soft_noise, pileup = par[SOFT_RESPONSE], par[SOFT_NOISE], par[PILEUP_SHAPE]
    vbf_fraction, vbf_scale, vbf_eta = par[VBF_FRACTION], 0.5 * par[VBF_PT_MEAN], par[VBF_ETA]
    rapidity_sigma = par[RAPIDITY_SIGMA]
    cum0, cum1 = modes[0, 0], modes[1, 0]
    # stage A over all candidates, compacted without a branch: a mispredicted
    # branch on a value at the end of a long dependency chain (two sqrt, loads)
    # stalls the pipeline for the whole chain, ~30 ns, and half the
    # candidates go each way
    keep = np.empty(n, dtype=np.int64)
    tau_bound = np.empty(n)
    tags = np.empty((2, n))
    doomed_a = np.zeros(n, dtype=np.bool_)
    na = 0
    for i in range(n):
        st = math.sqrt(max(1.0 - np.float64(cos_t[i]) ** 2, 0.0))  # as in the loop below
        sr = np.float64(soft_r[i])
        if u_vbf[i] < vbf_fraction:  # the Higgs recoils against two tag jets instead of ISR
            tags[0, na] = rng.standard_gamma(2.0) * vbf_scale
            tags[1, na] = rng.standard_gamma(2.0) * vbf_scale
            bound = tags[0, na] + tags[1, na] + sr
        else:
            bound = k_isr[i] * np.float64(pt_max[i]) + sr
        # |recoil| <= bound limits both taus' pT (float32 inputs: 1e-4 margin)
        tau_max = tau_pt_bound(bound * 1.0001 + 1e-3, np.float64(mass[i]), st, np.float64(cos_t[i]))
        doomed = visible_pt_bound(np.float64(z_lep[i]), tau_max) < lep_pre
        keep[na] = i
        tau_bound[na] = tau_max
        doomed_a[na] = doomed
        na += not (doomed and prune)

    p = pool.size  # next pooled uniform (see draws.refill)
    for ia in range(na):
        i = keep[ia]
        tau_max = tau_bound[ia]
        doomed = doomed_a[ia]
        z = np.float64(z_lep[i])
        ct = np.float64(cos_t[i])
        st = math.sqrt(max(1.0 - ct * ct, 0.0))
        mm = np.float64(mass[i])
        k = k_isr[i]
        vbf = u_vbf[i] < vbf_fraction
        sr = np.float64(soft_r[i])
        cap_pt = np.float64(pt_max[i])
        if vbf:
            k = 0
            ept[0], ept[1] = tags[0, ia], tags[1, ia]
        # the lepton's smearing and the hadronic decay are independent of the
        # rest: drawn now, they tighten the bound to the actual thresholds
        g_lep = rng.standard_normal()
        doomed |= lepton_pt(visible_pt_bound(z, tau_max), g_lep, lep_res) <= lep_min
        if doomed and prune:
            continue
        if p + RESERVE > pool.size:
            p = refill(rng, pool)
        mode = 0 if pool[p] < cum0 else (1 if pool[p] < cum1 else 2)
        m_vis = modes[mode, 1]
        if modes[mode, 2] > 0.0:  # Breit-Wigner: angle range (a, b) precomputed
            a, b = modes[mode, 3], modes[mode, 4]
            m_vis += 0.5 * modes[mode, 2] * math.tan(a + (b - a) * pool[p + 1])
        cos_h = 2.0 * pool[p + 2] - 1.0
        p += 3
        r = (m_vis / TAU_MASS) ** 2
        z_had = 0.5 * ((1.0 + r) + (1.0 - r) * cos_h)
        g_had = rng.standard_normal()
        had_max = had_raw_pt(visible_pt_bound(z_had, tau_max), g_had, had_stoch, had_res) * had_scale
        doomed |= had_max <= had_min
        if doomed and prune:
            continue

        # stage B: exact recoil, boson and taus
        px = 0.0
        py = 0.0
        if vbf:
            k = 2
            side = 1.0 if pool[p] < 0.5 else -1.0
            p += 1
            for j in range(2):
                peta[j] = side * abs(vbf_eta + rng.standard_normal())
                side = -side
                pphi[j], ec[j], es[j] = azimuth(pool[p])
                p += 1
                px -= ept[j] * ec[j]
                py -= ept[j] * es[j]
        else:
            # the hardest emission is pt_max, the K - 1 others Pareto truncated at it
            span = 1.0 - (pt0 / cap_pt) ** alpha if k > 0 else 0.0
            for j in range(k):
                if j == 0:
                    ept[j] = cap_pt
                else:
                    ept[j] = pt0 * (1.0 - pool[p] * span) ** (-1.0 / alpha)
                    p += 1
                pphi[j], ec[j], es[j] = azimuth(pool[p])
                p += 1
                px -= ept[j] * ec[j]
                py -= ept[j] * es[j]
        _, c, sn = azimuth(pool[p])
        sx, sy = sr * c, sr * sn
        px -= sx
        py -= sy
        y = rng.standard_normal() * rapidity_sigma
        mt = math.sqrt(mm * mm + px * px + py * py)
        ey = math.exp(y)
        be, bz = 0.5 * mt * (ey + 1.0 / ey), 0.5 * mt * (ey - 1.0 / ey)
        # tau 1 at theta* to the beam at rest (uniform azimuth), boosted to the lab
        pstar = math.sqrt(max((mm * mm - 4.0 * TAU_MASS * TAU_MASS) * mm * mm, 0.0)) / (2.0 * mm)
        e1 = 0.5 * mm
        _, c, sn = azimuth(pool[p + 1])
        p += 2
        dx, dy, dz = pstar * st * c, pstar * st * sn, pstar * ct
        gamma = be / mm
        bx, by, bzz = px / be, py / be, bz / be
        bp = bx * dx + by * dy + bzz * dz
        kk = gamma * gamma / (gamma + 1.0) * bp + gamma * e1
        t1 = (gamma * (e1 + bp), dx + kk * bx, dy + kk * by, dz + kk * bzz)
        t2 = (be - t1[0], px - t1[1], py - t1[2], bz - t1[3])
        pt1 = math.sqrt(t1[1] ** 2 + t1[2] ** 2)
        pt2 = math.sqrt(t2[1] ** 2 + t2[2] ** 2)
        doomed |= (lepton_pt(visible_pt_bound(z, pt1), g_lep, lep_res) <= lep_min
                   or t1[3] ** 2 > (pt1 * sinh_lep_pre) ** 2
                   or had_raw_pt(visible_pt_bound(z_had, pt2), g_had, had_stoch, had_res) * had_scale
                   <= had_min
                   or t2[3] ** 2 > (pt2 * sinh_had_pre) ** 2)
        if doomed and prune:
            continue

        # stage C: the decays, measured and selected (lepton first)
        x = michel_given_z(z, pool[p])
        cos_l = min(max(2.0 * z / x - 1.0, -1.0), 1.0)
        _, c, sn = azimuth(pool[p + 1])
        p += 2
        lep = decay_along_flight(t1[0], t1[1], t1[2], t1[3], TAU_MASS, 0.0,
                                 TAU_MASS * math.sqrt(max(1.0 - x, 0.0)), cos_l, c, sn)
        lep_true = math.sqrt(lep[1] ** 2 + lep[2] ** 2)
        lep_pt = lepton_pt(lep_true, g_lep, lep_res)
        if not (lep_pt > lep_min and lep[3] ** 2 < (lep_true * sinh_lep) ** 2):
            continue
        _, c, sn = azimuth(pool[p])
        p += 1
        had = decay_along_flight(t2[0], t2[1], t2[2], t2[3], TAU_MASS, m_vis, 0.0, cos_h, c, sn)
        had_true = math.sqrt(had[1] ** 2 + had[2] ** 2)
        had_raw = had_raw_pt(had_true, g_had, had_stoch, had_res)
        if not (had_raw * had_scale > had_min
                and had[3] ** 2 < (had_true * sinh_had) ** 2):
            continue
        violations += doomed

        # selected: PRI_ columns
        # momenta for now: eta and phi are computed vectorised afterwards (finish_block)
        out[0, m] = lep_pt
        out[1, m] = lep[3] / lep_true
        out[2, m] = lep[1]
        out[LEP_PY, m] = lep[2]
        out[3, m] = had_raw * had_scale
        out[4, m] = had[3] / had_true
        out[5, m] = had[1]
        out[HAD_PY, m] = had[2]
        # MET: minus everything measured, tau and jets at the raw scale
        vx = lep_pt * lep[1] / lep_true + had_raw * had[1] / had_true
        vy = lep_pt * lep[2] / lep_true + had_raw * had[2] / had_true
        state = jets.NO_JETS
        for j in range(k):
            eta = peta[j] if vbf else rng.standard_normal() * isr_eta_sigma
            raw = jets.jet_response(ept[j], rng.standard_normal(), jet_noise, jet_stoch, jet_const)
            if abs(eta) >= jet_eta_max:
                continue
            vx += raw * ec[j]
            vy += raw * es[j]
            if jet_scale * raw > jet_min:
                state = jets.add_jet(state, jet_scale * raw, eta, pphi[j])
        for r in range(8):
            out[jets.LEAD_PT + r, m] = state[r]
        activity = rng.standard_gamma(pileup) / pileup
        noise = soft_noise * math.sqrt(activity)
        mx = -(vx + soft_response * sx + noise * rng.standard_normal())
        my = -(vy + soft_response * sy + noise * rng.standard_normal())
        out[14, m] = mx
        out[15, m] = my
        m += 1
    return out[:, :m], violations
