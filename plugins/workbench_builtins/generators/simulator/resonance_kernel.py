"""Scalar physics of the H/Z -> tau tau -> l tau_h fast path, and its layouts.

The per-candidate formulas (bounds, detector responses, decays) shared by the
phase kernels of :mod:`.resonance_phases`, the packed parameter vector, the
rows of the candidate state table the phases pass on, and the rows of the
output block.  Each function mirrors its NumPy counterpart in
:mod:`.kinematics` / :mod:`.detector` (the reference the tests compare with).
"""

from __future__ import annotations

import math

import numba

TAU_MASS = 1.77686

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

STATE_FIELDS = 39
"""Rows of the candidate state table (STATE_FIELDS, n) float64, one column a
candidate, filled phase by phase; each phase compacts its survivors to the
front.  Rows are padded (resonance.ROW_PAD): rows a multiple of 4 KB apart
alias in the L1 cache (the same set for every field), ~5x slower loops."""
# stage A: the candidate and its first bound
Z, CT, ST, MASS, K, PT_MAX, SPAN, SOFT, TAG0, TAG1, VBF, TAU_MAX, DOOMED = range(13)
# hadronic decay and the two smearing Gaussians
G_LEP, G_HAD, M_VIS, Z_HAD, COS_H = range(13, 18)
# recoil and taus
SX, SY, E_OFF, T1E, T1X, T1Y, T1Z, T2E, T2X, T2Y, T2Z = range(18, 29)
# measured visible products
LEP_PT, LEP_X, LEP_Y, LEP_Z, LEP_TRUE, HAD_RAW, HAD_X, HAD_Y, HAD_Z, HAD_TRUE = range(29, 39)


@numba.njit(cache=True, error_model="numpy")
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


@numba.njit(cache=True, error_model="numpy")
def visible_pt_bound(z, tau_pt):
    """Largest pT of a visible product carrying the collinear fraction z of a tau."""
    return z * (tau_pt + TAU_MASS) + TAU_MASS


@numba.njit(cache=True, error_model="numpy")
def lepton_pt(true_pt, gauss, resolution):
    return true_pt * max(1.0 + resolution * gauss, 0.05)


@numba.njit(cache=True, error_model="numpy")
def had_raw_pt(true_pt, gauss, stochastic, constant):
    """Uncalibrated tau_h pT (sigma/pT = S/sqrt(pT) (+) C); the calibrated one is
    had_scale times it.  Increasing in the true pT for any fixed ``gauss``."""
    sigma = math.sqrt(stochastic * stochastic / max(true_pt, 1.0) + constant * constant)
    return true_pt * max(1.0 + sigma * gauss, 0.05)


@numba.njit(cache=True, error_model="numpy")
def decay_along_flight(e, px, py, pz, m_parent, m1, m2, cos_t, c, s):
    """Daughter 1 of a two-body decay at ``cos_t`` to the parent's flight direction
    at rest, azimuth (c, s) = (cos, sin); as kinematics.decay_along_flight."""
    ss = m_parent * m_parent
    half_inv = 0.5 / m_parent  # constant-folded for the tau: divisions limit the decay loop
    pstar = math.sqrt(max((ss - (m1 + m2) ** 2) * (ss - (m1 - m2) ** 2), 0.0)) * half_inv
    e1 = (ss + m1 * m1 - m2 * m2) * half_inv
    p = math.sqrt(px * px + py * py + pz * pz)
    gamma, bg = 2.0 * e * half_inv, 2.0 * p * half_inv
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


