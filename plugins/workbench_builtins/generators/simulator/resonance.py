"""Fast path of H / Z -> tau tau -> l tau_h: selected events straight from uniforms.

Same physics as :func:`.processes.resonance` (the NumPy reference, kept for
the truth-level tests), organised for speed, because ~10 Z candidates are
needed per selected event.  The candidates go through phases; each phase
draws what its survivors need in bulk (:mod:`.draws`), evaluates the
transcendental functions vectorised in NumPy, and runs one simple Numba loop
(:mod:`.resonance_phases`) that finishes the phase's arithmetic, applies an
*exact* bound and compacts the survivors without a branch:

A. all candidates, float32 NumPy: the lepton's collinear fraction z, the tau
   angle theta*, the mass, the ISR multiplicity K, the hardest emission and
   the soft-kT magnitude.  |recoil| <= K pT_max + |soft| (or the two VBF tags
   + |soft|) bounds the tau pT, hence the lepton's visible pT, which must
   reach the lepton preselection;
B. the lepton's smearing Gaussian, the hadronic decay (mode, mass, angle, hence
   its fraction z_h) and the tau_h Gaussian are independent of everything else:
   the same bound against the *actual* lepton and tau_h thresholds (the
   detector responses increase with the true pT for a fixed Gaussian);
C. the exact recoil (Pareto emissions, soft kT), rapidity and taus, with the
   bounds at tau level (pT and |eta|);
D. the decays, smeared and selected;
E. the selected events only: jets (eta drawn now), pile-up and MET.

Dropping a candidate only when it can never pass leaves the selected
distribution unchanged; ``prune=False`` runs every candidate to the end and
counts selected events a bound would have dropped (tested to be zero).
"""

from __future__ import annotations

import functools
import threading

import numba
import numpy as np

from workbench_builtins.generators.simulator import calibration as cal
from workbench_builtins.generators.simulator import draws, emissions
from workbench_builtins.generators.simulator import kinematics as kin
from workbench_builtins.generators.simulator import resonance_phases as phases
from workbench_builtins.generators.simulator.processes import (
    _breit_wigner_u,
    _cos_theta_star,
    _multiplicity_sampler_tables,
    preselection,
)
from workbench_builtins.generators.simulator.resonance_kernel import (
    HAD_PY,
    LEP_PY,
    PARAMETERS,
    STATE_FIELDS,
    K,
)

SUB_BATCH = 1 << 14
"""Candidates run through all phases together: the state table (312 bytes a
candidate) and stage A's float32 rows then stay in L2/L3-near caches; a whole
batch (65536) made every phase stream ~12 MB (~25% slower), smaller sub-batches
pay NumPy's per-call overhead (~40 calls each)."""


def generate(rng, n: int, cfg: cal.Resonance, det: cal.Detector, prune: bool = True):
    """PRI_ block (16, m) float32 of the selected events among ``n`` candidates
    (and, with ``prune=False``, the number of bound violations), sub-batch by
    sub-batch from the one ``rng``."""
    par = kernel_parameters(cfg, det)
    blocks, violations = [], 0
    for start in range(0, n, SUB_BATCH):
        block, v = _sub_batch(rng, min(SUB_BATCH, n - start), cfg, det, par, prune)
        blocks.append(block)
        violations += v
    block = finish_block(blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1))
    return block if prune else (block, violations)


def _sub_batch(rng, n, cfg, det, par, prune):
    """Kernel block (ROWS, m) of the selected events among ``n`` candidates, and
    the number of bound violations (phases A to E, see the module docstring)."""
    s, m = _candidates(rng, n, cfg, par, prune)
    # B: the lepton and tau_h Gaussians, the hadronic decay
    gauss = draws.normals(rng, 2 * m)
    u = draws.uniforms(rng, 3, m)
    cos_h = u[2] * np.float32(2.0) - np.float32(1.0)
    m = phases.hadron_bound(s, m, gauss[:m], gauss[m:], hadronic_mass(u[0], u[1]), cos_h, par, prune)
    # C: recoil and taus
    owner, starts = emissions.layout(s, m)
    ept = emissions.pareto_pt(s, owner, draws.uniforms(rng, 1, owner.size)[0], cfg.isr)
    ephi, ec, es = draws.azimuths(rng, owner.size)
    _, c, sn = draws.azimuths(rng, 2 * m)  # soft kT, tau 1 at rest
    y = draws.normals(rng, m).astype(np.float64)
    y *= cfg.rapidity_sigma
    ey = np.empty((2, m))
    np.exp(y, out=ey[0])
    np.negative(y, out=y)
    np.exp(y, out=ey[1])
    boson = emissions.recoil(s, m, owner, starts, ept, ec, es)
    m = phases.taus(s, m, boson, c, sn, ey, par, prune)
    # D: decays and selection
    v = draws.uniforms(rng, 1, m)[0]
    _, c, sn = draws.azimuths(rng, 2 * m)
    x = phases.michel_fractions(s, m, v)
    m, violations = phases.decays(s, m, x, c, sn, par)
    # E: detector response of the selected events
    jets = int(s[K, :m].sum())
    gauss = draws.normals(rng, 2 * jets + 2 * m)
    activity = rng.standard_gamma(det.pileup_shape, m) / det.pileup_shape
    u_side = draws.uniforms(rng, 1, m)[0]
    return phases.measure(s, m, ept, ec, es, ephi, gauss, activity, u_side, par), violations


def _candidates(rng, n: int, cfg: cal.Resonance, par: np.ndarray, prune: bool):
    """Stage A: draws for all ``n`` candidates (float32, SIMD), then the state
    table of those passing the first bound (phases.candidates)."""
    f32 = np.float32
    isr = cfg.isr
    vbf = cfg.vbf_fraction > 0
    u = draws.uniforms(rng, 7 if vbf else 6, n)
    cdf, guide = _multiplicity_sampler_tables(isr.rate, isr.shape)
    z, k = _z_and_multiplicity(u[0], u[3], kin._LEPTON_Z, cdf, guide)
    cos_t = _cos_theta_star(u[1], cfg.angular_1pcos2)
    mass = _breit_wigner_u(u[2], cfg.mass, cfg.width, cfg.mass_lo, cfg.mass_hi)
    soft_r = np.log1p(-u[4])  # Rayleigh |soft kT|
    soft_r *= f32(-2.0)
    np.sqrt(soft_r, out=soft_r)
    soft_r *= f32(isr.kt_sigma)
    # the hardest of K Pareto pTs: CDF (1 - (pt0/x)^alpha)^K = v (any value for K = 0)
    with np.errstate(divide="ignore"):
        tail = np.log(u[5])
        tail /= k.astype(f32)
    np.expm1(tail, out=tail)
    np.negative(tail, out=tail)  # (pt0 / pT_max)^alpha
    pt_max = np.power(tail, f32(-1.0 / isr.alpha))
    pt_max *= f32(isr.pt0)
    span = np.subtract(f32(1.0), tail, out=tail)  # of the K - 1 softer emissions
    if vbf:  # the Higgs recoils against two tag jets instead of ISR
        is_vbf = u[6] < f32(cfg.vbf_fraction)
        tags = np.zeros((2, n))
        tags[:, is_vbf] = rng.standard_gamma(2.0, (2, int(np.count_nonzero(is_vbf))))
        tags *= 0.5 * cfg.vbf_jet_pt_mean
    else:
        is_vbf, tags = np.zeros(0, dtype=bool), np.zeros((2, 0))
    s = _workspace(n)
    return s, phases.candidates(s, z, cos_t, mass, k, pt_max, span, soft_r, is_vbf, tags, par, prune)


_local = threading.local()


ROW_PAD = 24
"""Extra columns per state-table row (192 bytes): consecutive rows start in
different L1 cache sets."""


def _workspace(n: int) -> np.ndarray:
    """The state table (STATE_FIELDS, n), reused sub-batch after sub-batch: a
    fresh one costs its page faults (first touch) every time."""
    s = getattr(_local, "state", None)
    if s is None or s.shape[1] < n + ROW_PAD:
        s = _local.state = np.empty((STATE_FIELDS, n + ROW_PAD))
    return s


def hadronic_mass(u_mode, u_mass):
    """Visible mass of the tau_h from two uniforms: the mode by its branching
    fraction, then its truncated Breit-Wigner, mass + width/2 tan(a + (b - a) u)
    (the tan vectorised in float64 NumPy, the table look-ups in one loop)."""
    modes = hadronic_modes()
    mode, arg = phases.breit_wigner_angles(u_mode, u_mass, modes)
    np.tan(arg, out=arg)
    return phases.breit_wigner_masses(mode, arg, modes)


def finish_block(block: np.ndarray) -> np.ndarray:
    """The kernel's block (momenta for the lepton, tau_h and MET) as PRI_ columns,
    float32: eta, phi and |MET| vectorised (float64 arcsinh/arctan2 cost ~2 ns a
    value in NumPy, ~13 ns as scalar calls in the kernel)."""
    out = np.empty((16, block.shape[1]), dtype=np.float32)
    for pt, eta, phi, py in ((0, 1, 2, LEP_PY), (3, 4, 5, HAD_PY)):
        out[pt] = block[pt]
        out[eta] = np.arcsinh(block[eta])
        out[phi] = np.arctan2(block[py], block[phi])
    out[6:14] = block[6:14]
    mx, my = block[14], block[15]
    out[14] = np.sqrt(mx * mx + my * my)
    out[15] = np.arctan2(my, mx)
    return out


@numba.njit(cache=True, error_model="numpy")
def _z_and_multiplicity(u_z, u_k, z_table, cdf, guide):
    """Lepton fraction z (tabulated inverse CDF, as kinematics.lepton_z) and the
    ISR multiplicity K (guide-table inverse CDF, as kinematics.guide_sampler).
    Two loops: the interpolation has no branch and vectorises; the guide-table
    search has a data-dependent loop."""
    n = u_z.size
    z = np.empty(n, dtype=np.float32)
    k = np.empty(n, dtype=np.int64)
    last = np.float32(z_table.size - 1)
    top = z_table.size - 1
    for i in range(n):
        t = u_z[i] * last
        j = min(int(t), top)
        lo = z_table[j]
        z[i] = lo + (z_table[min(j + 1, top)] - lo) * (t - np.float32(j))
    cells = guide.size
    for i in range(n):
        v = np.float64(u_k[i])
        c = guide[int(v * cells)]
        while v >= cdf[c]:
            c += 1
        k[i] = c
    return z, k


@functools.lru_cache(maxsize=32)
def kernel_parameters(cfg: cal.Resonance, det: cal.Detector) -> np.ndarray:
    pre = preselection(det)
    values = {
        "lep_pre": pre.lep_pt, "had_pre": pre.had_pt,
        "sinh_lep_pre_eta": np.sinh(pre.lep_eta), "sinh_had_pre_eta": np.sinh(pre.had_eta),
        "lep_pt_min": cal.LEP_PT_MIN, "had_pt_min": cal.HAD_PT_MIN,
        "sinh_lep_eta": np.sinh(cal.LEP_ETA_MAX), "sinh_had_eta": np.sinh(cal.HAD_ETA_MAX),
        "lep_resolution": det.lep_resolution, "had_scale": det.had_scale,
        "had_resolution": det.had_resolution, "had_stochastic": det.had_stochastic,
        "jet_scale": det.jet_scale, "jet_noise": det.jet_noise,
        "jet_stochastic": det.jet_stochastic, "jet_constant": det.jet_constant,
        "jet_pt_min": cal.JET_PT_MIN, "jet_eta_max": cal.JET_ETA_MAX,
        "soft_response": det.soft_response, "soft_noise": det.soft_noise,
        "pileup_shape": det.pileup_shape, "pt0": cfg.isr.pt0, "alpha": cfg.isr.alpha,
        "isr_eta_sigma": cfg.isr.eta_sigma, "rapidity_sigma": cfg.rapidity_sigma,
        "vbf_fraction": cfg.vbf_fraction, "vbf_jet_pt_mean": cfg.vbf_jet_pt_mean,
        "vbf_jet_eta": cfg.vbf_jet_eta,
    }
    out = np.array([float(values[name]) for name in PARAMETERS])
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=1)
def hadronic_modes() -> np.ndarray:
    """calibration.TAU_HAD_MODES as rows (cumulative normalised fraction, mass,
    width, a, b): the Breit-Wigner is mass + width/2 tan(a + (b - a) u), as in
    processes.hadronic_mass / kinematics.breit_wigner."""
    modes = np.array(cal.TAU_HAD_MODES, dtype=np.float64)
    modes[:, 0] = np.cumsum(modes[:, 0]) / modes[:, 0].sum()
    width = np.where(modes[:, 2] > 0, modes[:, 2], 1.0)
    modes[:, 3] = np.arctan(2.0 * (modes[:, 3] - modes[:, 1]) / width)
    modes[:, 4] = np.arctan(2.0 * (modes[:, 4] - modes[:, 1]) / width)
    modes.flags.writeable = False
    return modes
