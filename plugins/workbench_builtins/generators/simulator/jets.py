"""Per-event jet bookkeeping as small Numba kernels (one pass, no sorting).

The stored dataset keeps only the two leading jets of each event plus the jet
count and the scalar pT sum.  A ragged jet list (``event`` index per jet) is
reduced in one pass: each jet is pushed into its event's leading/subleading
slots.  The NumPy form (``np.maximum.at`` twice, masks, scatters) needed ~10
passes over the jets and was a fifth of the detector time.  :func:`push_jet`
is also called jet by jet from the fused H/Z -> tau tau kernel.
"""

from __future__ import annotations

import numba
import numpy as np

from workbench.data.schema import PRIMARY, UNDEFINED

# rows of a (16, n) block of PRI_ columns (PRIMARY order)
LEAD_PT, LEAD_ETA, LEAD_PHI = (PRIMARY.index(f"PRI_jet_leading_{v}") for v in ("pt", "eta", "phi"))
SUB_PT, SUB_ETA, SUB_PHI = (PRIMARY.index(f"PRI_jet_subleading_{v}") for v in ("pt", "eta", "phi"))
N_JETS, ALL_PT = PRIMARY.index("PRI_n_jets"), PRIMARY.index("PRI_jet_all_pt")


NO_JETS = (UNDEFINED, UNDEFINED, UNDEFINED, UNDEFINED, UNDEFINED, UNDEFINED, 0.0, 0.0)
"""Jet state of an event as a tuple in the row order LEAD_PT .. ALL_PT (6 .. 13)."""


@numba.njit(cache=True)
def add_jet(state, pt, eta, phi):
    """:func:`push_jet` on a jet-state tuple (for kernels that keep an event's
    jets in registers: passing the block array to a helper costs a real call
    with reference counting in a large kernel)."""
    lpt, leta, lphi, spt, seta, sphi, count, total = state
    if pt > lpt:
        return (pt, eta, phi, lpt, leta, lphi, count + 1.0, total + pt)
    if pt > spt:
        return (lpt, leta, lphi, pt, eta, phi, count + 1.0, total + pt)
    return (lpt, leta, lphi, spt, seta, sphi, count + 1.0, total + pt)


@numba.njit(cache=True)
def clear_jets(out, i):
    """Event ``i``: no jet yet (-25 placeholders, zero count and sum)."""
    for r in (LEAD_PT, LEAD_ETA, LEAD_PHI, SUB_PT, SUB_ETA, SUB_PHI):
        out[r, i] = UNDEFINED
    out[N_JETS, i] = 0.0
    out[ALL_PT, i] = 0.0


@numba.njit(cache=True)
def push_jet(out, i, pt, eta, phi):
    """Add one jet to event ``i``: count, sum, and leading/subleading by pT.

    An empty slot holds -25, below any jet pT, so no special case is needed.
    """
    out[N_JETS, i] += 1.0
    out[ALL_PT, i] += pt
    if pt > out[LEAD_PT, i]:
        out[SUB_PT, i] = out[LEAD_PT, i]
        out[SUB_ETA, i] = out[LEAD_ETA, i]
        out[SUB_PHI, i] = out[LEAD_PHI, i]
        out[LEAD_PT, i] = pt
        out[LEAD_ETA, i] = eta
        out[LEAD_PHI, i] = phi
    elif pt > out[SUB_PT, i]:
        out[SUB_PT, i] = pt
        out[SUB_ETA, i] = eta
        out[SUB_PHI, i] = phi


@numba.njit(cache=True)
def jet_response(pt, gauss, noise, stochastic, constant):
    """Raw measured jet pT: sigma/pT = N/pT (+) S/sqrt(pT) (+) C, response floored at 0.05."""
    sigma = np.sqrt((noise / pt) ** 2 + stochastic * stochastic / pt + constant * constant)
    return pt * max(1.0 + sigma * gauss, 0.05)


@numba.njit(cache=True)
def jet_rows(out, event, pt, eta, phi):
    """Fill the jet rows of ``out`` (16, n) from a ragged jet list."""
    for i in range(out.shape[1]):
        clear_jets(out, i)
    for j in range(event.size):
        push_jet(out, event[j], pt[j], eta[j], phi[j])


@numba.njit(cache=True)
def measure_partons(out, event, pt, eta, phi, gauss, scale, noise, stochastic, constant,
                    pt_min, eta_max):
    """Jets from partons, written into the jet rows of ``out`` (16, n), and the
    partons' transverse momentum sum at the raw scale, returned as (2, n).

    Each parton is smeared (sigma/pT = N/pT (+) S/sqrt(pT) (+) C, response
    floored at 0.05, standard-normal ``gauss``); inside |eta| < eta_max it is
    measured: its raw pT enters the sum (the MET), and above ``pt_min`` after
    the calibration ``scale`` it is a jet.
    """
    n = out.shape[1]
    vis = np.zeros((2, n))
    for i in range(n):
        clear_jets(out, i)
    for j in range(event.size):
        if abs(eta[j]) >= eta_max:
            continue
        raw = jet_response(pt[j], gauss[j], noise, stochastic, constant)
        i = event[j]
        vis[0, i] += raw * np.cos(phi[j])
        vis[1, i] += raw * np.sin(phi[j])
        if scale * raw > pt_min:
            push_jet(out, i, scale * raw, eta[j], phi[j])
    return vis


# --- reconstruction of an event's jets: clustering, overlap removal, isolation, fake tau
# the packed parameters of event_jets (see detector.jet_parameters)
(JP_R2, JP_SCALE, JP_NOISE, JP_STOCH, JP_CONST, JP_PT_MIN, JP_ETA_MAX, JP_OVERLAP2, JP_ISO2,
 JP_ISO_RATIO, JP_TAU_ETA_MAX, JP_SLOTS, JP_FAKE_SCALE, JP_HAD_MIN, JP_TAU_RULE,
 JP_FAKE_SLOPE, JP_FAKE_GLUON, JP_FAKE_B, JP_B_RESPONSE, JP_B_SL_PROB, JP_B_SL_LOSS,
 JP_COS_NEAR) = range(22)
JET_PARAMETERS = 22
TAU_MERGE, TAU_REMOVE, TAU_REJECT = 0, 1, 2
"""What a jet inside the real tau_h's cone does: joins the tau candidate (the
tau is a jet of the same algorithm), is dropped from the jet list, or vetoes the
event (tau isolation)."""


@numba.njit(cache=True, inline="always")
def delta_r2(eta1, phi1, eta2, phi2):
    dphi = abs(phi1 - phi2)
    if dphi > np.pi:
        dphi = 2.0 * np.pi - dphi
    deta = eta1 - eta2
    return deta * deta + dphi * dphi


@numba.njit(cache=True, inline="always")
def b_visible(flavour, gauss, par):
    """Measured fraction of a jet's pT (in the jet and in the MET sum): 1 for
    light jets; for b jets JP_B_RESPONSE (the calorimeter response to b jets:
    muons of semileptonic decays and wider fragmentation are lost), times
    1 - x JP_B_SL_LOSS when the b hadron decayed semileptonically (probability
    JP_B_SL_PROB; x uniform: the neutrino's share).  The uniform is taken from
    the jet's Gaussian draw's fine digits (frac(|g| 2^20), independent of its
    coarse value that sets the resolution)."""
    if flavour != 2:
        return 1.0
    u = abs(gauss) * 1048576.0
    u -= np.floor(u)
    p = par[JP_B_SL_PROB]
    return par[JP_B_RESPONSE] * (1.0 - (0.0 if u >= p else par[JP_B_SL_LOSS] * u / p))


@numba.njit(cache=True, inline="always")
def cluster(pt, eta, phi, c, s, g, f, n, r2):
    """Cone clustering of n partons in place, anti-kt-like: hardest first, each
    parton joins the first harder jet whose axis is within sqrt(r2) (the
    hard parton's cone), else it seeds a jet.  A jet's transverse momentum is
    the vector sum (its direction (c, s) and phi follow it), its eta the seed's.
    Returns the number of jets; they are the first entries of the arrays (g
    keeps the seed's standard-normal draw for the response, f its flavour)."""
    # insertion sort by pT, descending
    for i in range(1, n):
        p, e, h, cc, ss, gg, ff = pt[i], eta[i], phi[i], c[i], s[i], g[i], f[i]
        j = i - 1
        while j >= 0 and pt[j] < p:
            pt[j + 1], eta[j + 1], phi[j + 1], c[j + 1], s[j + 1], g[j + 1], f[j + 1] = (
                pt[j], eta[j], phi[j], c[j], s[j], g[j], f[j])
            j -= 1
        pt[j + 1], eta[j + 1], phi[j + 1], c[j + 1], s[j + 1], g[j + 1], f[j + 1] = p, e, h, cc, ss, gg, ff
    nj = 0
    for i in range(n):
        joined = -1
        for j in range(nj):
            if delta_r2(eta[i], phi[i], eta[j], phi[j]) < r2:
                joined = j
                break
        if joined < 0:
            pt[nj], eta[nj], phi[nj], c[nj], s[nj], g[nj], f[nj] = pt[i], eta[i], phi[i], c[i], s[i], g[i], f[i]
            nj += 1
        else:
            jx = pt[joined] * c[joined] + pt[i] * c[i]
            jy = pt[joined] * s[joined] + pt[i] * s[i]
            q = np.sqrt(jx * jx + jy * jy)
            pt[joined] = q
            c[joined], s[joined] = jx / q, jy / q
            phi[joined] = np.arctan2(jy, jx)
    return nj


@numba.njit(cache=True, inline="always")
def event_jets(pt, eta, phi, c, s, g, f, n, lep_ux, lep_uy, lep_sh, lep_pt, tau_ux, tau_uy, tau_sh,
               fake, u_fake, par, cand):
    """Reconstructed jets of one event from its n partons (arrays modified in place):

    1. cone clustering (:func:`cluster`, radius sqrt(par[JP_R2]));
    2. lepton isolation: a jet within the isolation cone carrying more than
       JP_ISO_RATIO of the lepton's pT vetoes the event;
    3. each jet inside the calorimeter (|eta| < JP_ETA_MAX) is measured (raw
       response, in the MET sum); one within the overlap distance of the lepton
       is not a jet (it contains the lepton), one near the real tau_h follows
       JP_TAU_RULE; above JP_PT_MIN after the calibration it is in the jet list;
    4. ``fake``: the tau candidate is a jet.  Each jet that could pass the tau_h
       selection fakes at a relative rate w = (pT_tau / HAD_PT_MIN)^-JP_FAKE_SLOPE
       times its flavour's factor (f: the seed parton's; JP_FAKE_GLUON, 1,
       JP_FAKE_B): the point u_fake * JP_SLOTS (JP_SLOTS = FAKE_WEIGHT_MAX)
       falls in one jet's stretch of the cumulative w, which is the tau
       candidate, or beyond them all (event rejected): an event is kept in
       proportion to its jets' total rate, each jet in proportion to its own.

    The lepton and the real tau_h come as transverse directions (ux, uy) and
    sinh(eta) = pz / pT; their eta and phi are evaluated only when a jet is
    within the overlap distance in azimuth (cos dphi > cos R, exact).

    Returns (jet state tuple (rows LEAD_PT .. ALL_PT), vis_x, vis_y, tau_x,
    tau_y, fake_raw, fake_eta, fake_phi, ok): the raw transverse momentum of
    all measured jets (fake tau included), what merged into the real tau, the
    fake tau's raw pT and direction, and whether the event survives.
    ``cand`` is scratch space (at least n)."""
    nj = cluster(pt, eta, phi, c, s, g, f, n, par[JP_R2])
    iso2, iso_ratio, overlap2 = par[JP_ISO2], par[JP_ISO_RATIO], par[JP_OVERLAP2]
    scale, noise, stoch, const = par[JP_SCALE], par[JP_NOISE], par[JP_STOCH], par[JP_CONST]
    pt_min, eta_max, rule = par[JP_PT_MIN], par[JP_ETA_MAX], int(par[JP_TAU_RULE])
    cos_near = par[JP_COS_NEAR]
    lep_eta = lep_phi = tau_eta = tau_phi = 0.0
    lep_known = tau_known = False
    vx = vy = tx = ty = 0.0
    ok = True
    ncand = 0
    for k in range(nj):
        d_lep = 1e9
        if c[k] * lep_ux + s[k] * lep_uy > cos_near:
            if not lep_known:
                lep_eta, lep_phi, lep_known = np.arcsinh(lep_sh), np.arctan2(lep_uy, lep_ux), True
            d_lep = delta_r2(eta[k], phi[k], lep_eta, lep_phi)
        if d_lep < iso2 and pt[k] > iso_ratio * lep_pt:
            ok = False
        if abs(eta[k]) >= eta_max:
            continue
        raw = jet_response(pt[k] * b_visible(f[k], g[k], par), g[k], noise, stoch, const)
        vx += raw * c[k]
        vy += raw * s[k]
        if d_lep < overlap2:
            continue
        if not fake and c[k] * tau_ux + s[k] * tau_uy > cos_near:
            if not tau_known:
                tau_eta, tau_phi, tau_known = np.arcsinh(tau_sh), np.arctan2(tau_uy, tau_ux), True
            if delta_r2(eta[k], phi[k], tau_eta, tau_phi) < overlap2:
                if rule == TAU_MERGE:
                    tx += raw * c[k]
                    ty += raw * s[k]
                elif rule == TAU_REJECT:
                    ok = False
                continue
        if scale * raw > pt_min:
            pt[k] = raw  # from here on pt holds the raw measured pT
            cand[ncand] = k
            ncand += 1
    f_raw, f_eta, f_phi = 0.0, 0.0, 0.0
    skip = -1
    if fake:
        target = u_fake * par[JP_SLOTS]
        tau_min = par[JP_HAD_MIN] / (par[JP_FAKE_SCALE] * scale)
        total = 0.0
        for a in range(ncand):
            k = cand[a]
            if abs(eta[k]) < par[JP_TAU_ETA_MAX] and pt[k] > tau_min:
                flavour = par[JP_FAKE_GLUON] if f[k] == 0 else (1.0 if f[k] == 1 else par[JP_FAKE_B])
                total += flavour * (pt[k] / tau_min) ** -par[JP_FAKE_SLOPE]
                if total > target:
                    skip = a
                    f_raw, f_eta, f_phi = pt[k], eta[k], phi[k]
                    break
        if skip < 0:
            ok = False
    state = NO_JETS
    for a in range(ncand):
        if a != skip:
            k = cand[a]
            state = add_jet(state, scale * pt[k], eta[k], phi[k])
    return state, vx, vy, tx, ty, f_raw, f_eta, f_phi, ok


@numba.njit(cache=True)
def reconstruct_jets(offsets, pt, eta, phi, c, s, g, f, lep, lep_pt, tau, fake, u_fake, par, out):
    """:func:`event_jets` for every event of an event-major parton list
    (event i owns [offsets[i], offsets[i + 1])), ``lep`` and ``tau`` (3, n)
    the directions (ux, uy, sinh eta); the jet rows go to ``out`` (16, n).  Returns (vis (2, n), tau additions (2, n), fake tau (3, n): raw
    pT, eta, phi; ok (n))."""
    n = offsets.size - 1
    vis = np.zeros((2, n))
    merged = np.zeros((2, n))
    ftau = np.zeros((3, n))
    ok = np.empty(n, dtype=np.bool_)
    longest = 0
    for i in range(n):
        longest = max(longest, offsets[i + 1] - offsets[i])
    cand = np.empty(max(longest, 1), dtype=np.int64)
    for i in range(n):
        a, b = offsets[i], offsets[i + 1]
        state, vx, vy, tx, ty, f_raw, f_eta, f_phi, good = event_jets(
            pt[a:b], eta[a:b], phi[a:b], c[a:b], s[a:b], g[a:b], f[a:b], b - a, lep[0, i], lep[1, i],
            lep[2, i], lep_pt[i], tau[0, i], tau[1, i], tau[2, i], fake[i], u_fake[i], par, cand)
        for r in range(8):
            out[LEAD_PT + r, i] = state[r]
        vis[0, i], vis[1, i], merged[0, i], merged[1, i] = vx, vy, tx, ty
        ftau[0, i], ftau[1, i], ftau[2, i] = f_raw, f_eta, f_phi
        ok[i] = good
    return vis, merged, ftau, ok
