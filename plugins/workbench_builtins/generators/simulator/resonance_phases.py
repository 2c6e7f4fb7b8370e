"""The phase kernels of the H/Z -> tau tau fast path (see :mod:`.resonance`).

The survivors of the previous phase are the first m columns of the state
table ``s`` (fields resonance_kernel.Z .. HAD_TRUE as rows).  Each phase is a
compute loop with no branch and no carried state, so that LLVM vectorises it
(sqrt and divisions 8 candidates at a time with AVX-512), which writes its
fields and pass flag in place, then :func:`compact` moves the survivors'
fields that later phases read to the front, again without a data-dependent
branch: a mispredicted branch on a value at the end of a long dependency chain
stalls the pipeline (~30 ns) and about half of the candidates go each way.  Random numbers arrive as arrays drawn in bulk and
transcendental functions are evaluated vectorised in NumPy between phases, so
the loops hold only arithmetic and sqrt.

With ``prune=False`` nothing is dropped before the final selection; the DOOMED
row records what a bound would have dropped and :func:`decays` counts selected
events among them (must be zero: the bounds are exact).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from workbench_builtins.generators.simulator import jets
from workbench_builtins.generators.simulator.resonance_kernel import (
    COS_H,
    CT,
    DOOMED,
    E_OFF,
    G_HAD,
    G_LEP,
    HAD_PT_MIN,
    HAD_PY,
    HAD_RAW,
    HAD_RES,
    HAD_SCALE,
    HAD_STOCH,
    HAD_TRUE,
    HAD_X,
    HAD_Y,
    HAD_Z,
    ISR_ETA_SIGMA,
    JET_CONST,
    JET_ETA_MAX,
    JET_NOISE,
    JET_PT_MIN,
    JET_SCALE,
    JET_STOCH,
    LEP_PRE,
    LEP_PT,
    LEP_PT_MIN,
    LEP_PY,
    LEP_RES,
    LEP_TRUE,
    LEP_X,
    LEP_Y,
    LEP_Z,
    M_VIS,
    MASS,
    PT_MAX,
    ROWS,
    SINH_HAD_ETA,
    SINH_HAD_PRE_ETA,
    SINH_LEP_ETA,
    SINH_LEP_PRE_ETA,
    SOFT,
    SOFT_NOISE,
    SOFT_RESPONSE,
    SPAN,
    ST,
    SX,
    SY,
    T1E,
    T1X,
    T1Y,
    T1Z,
    T2E,
    T2X,
    T2Y,
    T2Z,
    TAG0,
    TAG1,
    TAU_MASS,
    TAU_MAX,
    VBF,
    VBF_ETA,
    Z_HAD,
    K,
    Z,
    decay_along_flight,
    had_raw_pt,
    lepton_pt,
    tau_pt_bound,
    visible_pt_bound,
)


@numba.njit(cache=True, error_model="numpy")
def compact(s, m, passed, rows):
    """Survivors (``passed``) of the first m columns to the front, for the
    fields ``rows`` only; returns their number."""
    keep = np.empty(m, dtype=np.int64)
    j = 0
    for i in range(m):
        keep[j] = i
        j += passed[i]
    for r in rows:
        row = s[r]
        for a in range(j):  # keep[a] >= a: in place
            row[a] = row[keep[a]]
    return j


AFTER_HADRON = np.array([Z, CT, ST, MASS, K, PT_MAX, SPAN, SOFT, TAG0, TAG1, VBF, DOOMED,
                         G_LEP, G_HAD, M_VIS, Z_HAD, COS_H])
AFTER_TAUS = np.array([Z, K, VBF, E_OFF, DOOMED, G_LEP, G_HAD, M_VIS, COS_H, SX, SY,
                       T1E, T1X, T1Y, T1Z, T2E, T2X, T2Y, T2Z])
AFTER_DECAYS = np.array([K, VBF, E_OFF, SX, SY, LEP_PT, LEP_X, LEP_Y, LEP_Z, LEP_TRUE,
                         HAD_RAW, HAD_X, HAD_Y, HAD_Z, HAD_TRUE])
"""The fields each compaction keeps: those later phases read."""
TAUS_OUT = np.array([DOOMED, SX, SY, T1E, T1X, T1Y, T1Z, T2E, T2X, T2Y, T2Z])
DECAYS_OUT = np.array([LEP_PT, LEP_X, LEP_Y, LEP_Z, LEP_TRUE, HAD_RAW, HAD_X, HAD_Y, HAD_Z, HAD_TRUE])
"""The fields :func:`taus` / :func:`decays` compute, in the column order of
their local candidate-major block (see :func:`taus`)."""


@numba.njit(cache=True, error_model="numpy")
def _store(s, new, rows, m):
    """Columns of the candidate-major block ``new`` (m, >= rows.size) into the state rows."""
    for r in range(rows.size):
        row = s[rows[r]]
        for i in range(m):
            row[i] = new[i, r]


@numba.njit(cache=True, error_model="numpy")
def candidates(s, z, cos_t, mass, k, pt_max, span, soft_r, vbf, tags, par, prune):
    """Stage A: the candidates whose lepton can reach the preselection, written
    to the state table ``s``; returns their number.  |recoil| <= K pT_max +
    |soft| (or the two VBF tags + |soft|) bounds the tau pT (tau_pt_bound),
    hence the lepton pT.  ``vbf`` (bool) and ``tags`` (2, n) are empty when the
    process has no VBF component."""
    n = z.size
    lep_pre = par[LEP_PRE]
    has_vbf = vbf.size > 0
    bound = np.empty(n)
    for i in range(n):
        bound[i] = k[i] * np.float64(pt_max[i]) + np.float64(soft_r[i])
    if has_vbf:
        for i in range(n):
            tag = tags[0, i] + tags[1, i] + np.float64(soft_r[i])
            bound[i] = tag if vbf[i] else bound[i]
    tau_max = np.empty(n)
    doomed = np.empty(n, dtype=np.bool_)
    for i in range(n):
        ct = np.float64(cos_t[i])
        st = math.sqrt(max(1.0 - ct * ct, 0.0))
        # float32 inputs: 1e-4 margin
        t = tau_pt_bound(bound[i] * 1.0001 + 1e-3, np.float64(mass[i]), st, ct)
        tau_max[i] = t
        doomed[i] = visible_pt_bound(np.float64(z[i]), t) < lep_pre
    keep = np.empty(n, dtype=np.int64)
    na = 0
    for i in range(n):
        keep[na] = i
        na += not (doomed[i] and prune)
    for a in range(na):
        i = keep[a]
        ct = np.float64(cos_t[i])
        v = has_vbf and vbf[i]
        s[Z, a] = z[i]
        s[CT, a] = ct
        s[ST, a] = math.sqrt(max(1.0 - ct * ct, 0.0))
        s[MASS, a] = mass[i]
        s[K, a] = 2 if v else k[i]
        s[PT_MAX, a] = pt_max[i]
        s[SPAN, a] = span[i]
        s[SOFT, a] = soft_r[i]
        s[TAG0, a] = tags[0, i] if v else 0.0
        s[TAG1, a] = tags[1, i] if v else 0.0
        s[VBF, a] = v
        s[TAU_MAX, a] = tau_max[i]
        s[DOOMED, a] = doomed[i]
    return na


@numba.njit(cache=True, error_model="numpy")
def breit_wigner_angles(u_mode, u_mass, modes):
    """Hadronic mode (by the cumulative fractions in modes[:, 0]) and the angle
    a + (b - a) u of its Breit-Wigner (see resonance.hadronic_modes)."""
    n = u_mode.size
    mode = np.empty(n, dtype=np.int64)
    arg = np.empty(n)
    c0, c1 = modes[0, 0], modes[1, 0]
    for i in range(n):
        md = (u_mode[i] >= c0) + (u_mode[i] >= c1)
        a = modes[md, 3]
        mode[i] = md
        arg[i] = a + (modes[md, 4] - a) * np.float64(u_mass[i])
    return mode, arg


@numba.njit(cache=True, error_model="numpy")
def breit_wigner_masses(mode, tan_arg, modes):
    """mass + width/2 tan(angle) per mode (width 0: the mode's fixed mass)."""
    out = np.empty(mode.size)
    for i in range(mode.size):
        md = mode[i]
        out[i] = modes[md, 1] + 0.5 * modes[md, 2] * tan_arg[i]
    return out


@numba.njit(cache=True, error_model="numpy")
def hadron_bound(s, m, g_lep, g_had, m_vis, cos_h, par, prune):
    """The lepton's smearing Gaussian and the hadronic decay (mass, angle, hence
    its fraction z_had) and the tau_h Gaussian are independent of everything
    else: the stage-A tau bound against the actual lepton and tau_h thresholds
    (both responses increase with the true pT for a fixed Gaussian)."""
    lep_res, lep_min = par[LEP_RES], par[LEP_PT_MIN]
    had_scale, had_stoch, had_res, had_min = par[HAD_SCALE], par[HAD_STOCH], par[HAD_RES], par[HAD_PT_MIN]
    passed = np.empty(m, dtype=np.bool_)
    for i in range(m):
        tau_max = s[TAU_MAX, i]
        gl = np.float64(g_lep[i])
        gh = np.float64(g_had[i])
        ch = np.float64(cos_h[i])
        mv = m_vis[i]
        r = (mv / TAU_MASS) ** 2
        zh = 0.5 * ((1.0 + r) + (1.0 - r) * ch)
        doomed = ((s[DOOMED, i] != 0.0)
                  | (lepton_pt(visible_pt_bound(s[Z, i], tau_max), gl, lep_res) <= lep_min)
                  | (had_raw_pt(visible_pt_bound(zh, tau_max), gh, had_stoch, had_res) * had_scale
                     <= had_min))
        s[DOOMED, i] = doomed
        s[G_LEP, i] = gl
        s[G_HAD, i] = gh
        s[M_VIS, i] = mv
        s[Z_HAD, i] = zh
        s[COS_H, i] = ch
        passed[i] = not (doomed and prune)
    return compact(s, m, passed, AFTER_HADRON)


@numba.njit(cache=True, error_model="numpy")
def taus(s, m, boson, cos_phi, sin_phi, ey, par, prune):
    """Exact boson (recoil ``boson`` (2, m), soft kT at the azimuths
    ``cos_phi/sin_phi[:m]``, rapidity via ``ey`` = (e^y, e^-y)) and the two taus
    (tau azimuths ``cos_phi/sin_phi[m:]``); the bounds again at tau level (pT
    and |eta| preselection).

    The results go to one candidate-major local block (one write stream):
    LLVM vectorises a loop only while its runtime no-overlap checks (one per
    pair of written and read streams) stay few, and eleven output rows kept
    this loop scalar (~2x slower)."""
    lep_res, lep_min = par[LEP_RES], par[LEP_PT_MIN]
    had_scale, had_stoch, had_res, had_min = par[HAD_SCALE], par[HAD_STOCH], par[HAD_RES], par[HAD_PT_MIN]
    sinh_lep_pre, sinh_had_pre = par[SINH_LEP_PRE_ETA], par[SINH_HAD_PRE_ETA]
    new = np.empty((m, TAUS_OUT.size + 1))  # the fields, then the pass flag
    for i in range(m):
        sr = s[SOFT, i]
        sx, sy = sr * np.float64(cos_phi[i]), sr * np.float64(sin_phi[i])
        px = boson[0, i] - sx
        py = boson[1, i] - sy
        mm, ct, st = s[MASS, i], s[CT, i], s[ST, i]
        mt = math.sqrt(mm * mm + px * px + py * py)
        ex, ex_inv = ey[0, i], ey[1, i]
        be, bz = 0.5 * mt * (ex + ex_inv), 0.5 * mt * (ex - ex_inv)
        # tau 1 at theta* to the beam at rest (uniform azimuth), boosted to the lab
        pstar = 0.5 * math.sqrt(max(mm * mm - 4.0 * TAU_MASS * TAU_MASS, 0.0))
        e1 = 0.5 * mm
        dx = pstar * st * np.float64(cos_phi[m + i])
        dy = pstar * st * np.float64(sin_phi[m + i])
        dz = pstar * ct
        gamma = be / mm
        inv_be = 1.0 / be
        bx, by, bzz = px * inv_be, py * inv_be, bz * inv_be
        bp = bx * dx + by * dy + bzz * dz
        kk = gamma * gamma / (gamma + 1.0) * bp + gamma * e1
        t1e, t1x, t1y, t1z = gamma * (e1 + bp), dx + kk * bx, dy + kk * by, dz + kk * bzz
        t2e, t2x, t2y, t2z = be - t1e, px - t1x, py - t1y, bz - t1z
        pt1 = math.sqrt(t1x * t1x + t1y * t1y)
        pt2 = math.sqrt(t2x * t2x + t2y * t2y)
        doomed = ((s[DOOMED, i] != 0.0)
                  | (lepton_pt(visible_pt_bound(s[Z, i], pt1), s[G_LEP, i], lep_res) <= lep_min)
                  | (t1z * t1z > (pt1 * sinh_lep_pre) ** 2)
                  | (had_raw_pt(visible_pt_bound(s[Z_HAD, i], pt2), s[G_HAD, i], had_stoch, had_res)
                     * had_scale <= had_min)
                  | (t2z * t2z > (pt2 * sinh_had_pre) ** 2))
        new[i, 0], new[i, 1], new[i, 2] = doomed, sx, sy
        new[i, 3], new[i, 4], new[i, 5], new[i, 6] = t1e, t1x, t1y, t1z
        new[i, 7], new[i, 8], new[i, 9], new[i, 10] = t2e, t2x, t2y, t2z
        new[i, 11] = not (doomed and prune)
    _store(s, new, TAUS_OUT, m)
    return compact(s, m, new[:, 11] != 0.0, AFTER_TAUS)


@numba.njit(cache=True, error_model="numpy")
def michel_fractions(s, m, v):
    """Michel fraction x given z for the first m candidates: the 6 safeguarded
    Newton steps of kinematics.michel_given_z, step-major.  One candidate's
    steps are a serial chain of divisions (~60 ns) that out-of-order execution
    cannot overlap inside the large decay loop; step-major, each inner loop is
    independent per candidate and LLVM vectorises it (~10x faster)."""
    x = np.empty(m)
    zs = np.empty(m)
    target = np.empty(m)
    for i in range(m):
        z = s[Z, i]
        vi = np.float64(v[i])
        gz = 3.0 * z * z - (4.0 / 3.0) * z * z * z
        zs[i] = z
        target[i] = gz + vi * ((3.0 - 4.0 / 3.0) - gz)
        x[i] = z + vi * (1.0 - z)
    for _ in range(6):
        for i in range(m):
            xi = x[i]
            d = 2.0 * xi * (3.0 - 2.0 * xi)
            xi = xi - (3.0 * xi * xi - (4.0 / 3.0) * xi * xi * xi - target[i]) / max(d, 1e-12)
            x[i] = min(max(xi, zs[i]), 1.0)
    return x


@numba.njit(cache=True, error_model="numpy")
def decays(s, m, x_michel, cos_phi, sin_phi, par):
    """The tau decays (lepton: Michel fraction given z; tau_h: the drawn mass and
    angle), measured and selected; returns the selected count and the number of
    selected candidates a bound had marked DOOMED (0).  The lepton's decay
    azimuths are ``cos_phi/sin_phi[:m]``, the tau_h's ``[m:]`` (few arrays: see
    :func:`taus`)."""
    lep_res, lep_min, sinh_lep = par[LEP_RES], par[LEP_PT_MIN], par[SINH_LEP_ETA]
    had_scale, had_stoch, had_res, had_min = par[HAD_SCALE], par[HAD_STOCH], par[HAD_RES], par[HAD_PT_MIN]
    sinh_had = par[SINH_HAD_ETA]
    new = np.empty((m, DECAYS_OUT.size + 1))  # the fields, then the selection flag
    violations = 0
    for i in range(m):
        z = s[Z, i]
        x = x_michel[i]
        cos_l = min(max(2.0 * z / x - 1.0, -1.0), 1.0)
        lep = decay_along_flight(s[T1E, i], s[T1X, i], s[T1Y, i], s[T1Z, i], TAU_MASS, 0.0,
                                 TAU_MASS * math.sqrt(max(1.0 - x, 0.0)), cos_l,
                                 np.float64(cos_phi[i]), np.float64(sin_phi[i]))
        lep_true = math.sqrt(lep[1] * lep[1] + lep[2] * lep[2])
        lep_pt = lepton_pt(lep_true, s[G_LEP, i], lep_res)
        had = decay_along_flight(s[T2E, i], s[T2X, i], s[T2Y, i], s[T2Z, i], TAU_MASS, s[M_VIS, i],
                                 0.0, s[COS_H, i], np.float64(cos_phi[m + i]), np.float64(sin_phi[m + i]))
        had_true = math.sqrt(had[1] * had[1] + had[2] * had[2])
        had_raw = had_raw_pt(had_true, s[G_HAD, i], had_stoch, had_res)
        sel = ((lep_pt > lep_min) & (lep[3] * lep[3] < (lep_true * sinh_lep) ** 2)
               & (had_raw * had_scale > had_min) & (had[3] * had[3] < (had_true * sinh_had) ** 2))
        new[i, 10] = sel
        violations += sel & (s[DOOMED, i] != 0.0)
        new[i, 0], new[i, 1], new[i, 2], new[i, 3], new[i, 4] = lep_pt, lep[1], lep[2], lep[3], lep_true
        new[i, 5], new[i, 6], new[i, 7], new[i, 8], new[i, 9] = had_raw, had[1], had[2], had[3], had_true
    _store(s, new, DECAYS_OUT, m)
    return compact(s, m, new[:, 10] != 0.0, AFTER_DECAYS), violations


@numba.njit(cache=True, error_model="numpy")
def measure(s, m, ept, ec, es, ephi, gauss, activity, u_side, par):
    """Kernel block (ROWS, m) of the selected events: lepton and tau_h momenta,
    jets from the emissions (eta drawn now: Gaussian, or VBF tags in opposite
    hemispheres) and the MET.  ``gauss`` holds two normals per emission (eta,
    response), then two per event (MET noise), in event order."""
    had_scale = par[HAD_SCALE]
    jet_scale, jet_noise, jet_stoch, jet_const = par[JET_SCALE], par[JET_NOISE], par[JET_STOCH], par[JET_CONST]
    jet_min, jet_eta_max, isr_eta_sigma = par[JET_PT_MIN], par[JET_ETA_MAX], par[ISR_ETA_SIGMA]
    soft_response, soft_noise, vbf_eta = par[SOFT_RESPONSE], par[SOFT_NOISE], par[VBF_ETA]
    out = np.empty((ROWS, m))
    q = 0
    for i in range(m):
        lep_pt, lep_true = s[LEP_PT, i], s[LEP_TRUE, i]
        had_raw, had_true = s[HAD_RAW, i], s[HAD_TRUE, i]
        # momenta for now: eta and phi are computed vectorised afterwards (finish_block)
        out[0, i] = lep_pt
        out[1, i] = s[LEP_Z, i] / lep_true
        out[2, i] = s[LEP_X, i]
        out[LEP_PY, i] = s[LEP_Y, i]
        out[3, i] = had_raw * had_scale
        out[4, i] = s[HAD_Z, i] / had_true
        out[5, i] = s[HAD_X, i]
        out[HAD_PY, i] = s[HAD_Y, i]
        # MET: minus everything measured, tau and jets at the raw scale
        vx = lep_pt * s[LEP_X, i] / lep_true + had_raw * s[HAD_X, i] / had_true
        vy = lep_pt * s[LEP_Y, i] / lep_true + had_raw * s[HAD_Y, i] / had_true
        vbf = s[VBF, i] != 0.0
        side = 1.0 if u_side[i] < 0.5 else -1.0
        state = jets.NO_JETS
        o = int(s[E_OFF, i])
        for e in range(o, o + int(s[K, i])):
            g_eta = np.float64(gauss[q])
            raw = jets.jet_response(ept[e], np.float64(gauss[q + 1]), jet_noise, jet_stoch, jet_const)
            q += 2
            eta = side * abs(vbf_eta + g_eta) if vbf else g_eta * isr_eta_sigma
            side = -side
            if abs(eta) >= jet_eta_max:
                continue
            vx += raw * ec[e]
            vy += raw * es[e]
            if jet_scale * raw > jet_min:
                state = jets.add_jet(state, jet_scale * raw, eta, np.float64(ephi[e]))
        for r in range(8):
            out[jets.LEAD_PT + r, i] = state[r]
        noise = soft_noise * math.sqrt(activity[i])
        out[14, i] = -(vx + soft_response * s[SX, i] + noise * np.float64(gauss[q]))
        out[15, i] = -(vy + soft_response * s[SY, i] + noise * np.float64(gauss[q + 1]))
        q += 2
    return out
