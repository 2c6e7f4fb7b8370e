"""Fast path of H / Z -> tau tau -> l tau_h: selected events straight from uniforms.

Same physics as :func:`.processes.resonance` (the NumPy reference, kept for
the truth-level tests), organised for speed, because ~10 Z candidates are
needed per selected event.  Stage A is vectorised over all candidates in
float32 (NumPy's SIMD transcendental functions, ~0.4 ns a value): the lepton's
collinear fraction z, the tau angle theta*, the mass, the ISR multiplicity K,
the hardest emission and the soft-kT magnitude.  Then one Numba kernel
(:mod:`.resonance_kernel`) walks the candidates and drops each at the first
*exact* bound it fails:

1. |recoil| <= K pT_max + |soft| (or the two VBF tags + |soft|) and
   pT_tau <= (m_T sin theta* + pT_B)/2 bound the visible pT by
   z (pT_tau + m_tau) + m_tau, which must reach the lepton preselection;
2. the lepton's smearing Gaussian, the hadronic decay (mode, mass, angle, hence
   its fraction z_h) and the tau_h smearing Gaussian are independent of
   everything else, so they are drawn next and the same bound is compared with
   the *actual* lepton and tau_h thresholds (the detector responses increase with
   the true pT for a fixed Gaussian);
3. the exact recoil, rapidity and taus, with the bounds at tau level;
4. the decays, smeared and selected.

The survivors go straight through the detector (jets, MET) into the PRI_
columns.  Dropping a candidate only when it can never pass leaves the selected
distribution unchanged; ``prune=False`` runs every candidate to the end and
counts selected events a bound would have dropped (tested to be zero).
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from . import calibration as cal
from . import draws
from . import kinematics as kin
from .processes import _breit_wigner_u, _cos_theta_star, _multiplicity_sampler_tables, preselection
from .resonance_kernel import HAD_PY, LEP_PY, PARAMETERS, resonance_events


def generate(rng, n: int, cfg: cal.Resonance, det: cal.Detector, prune: bool = True):
    """PRI_ block (16, m) float32 of the selected events among ``n`` candidates
    (and, with ``prune=False``, the number of bound violations)."""
    f32 = np.float32
    isr = cfg.isr
    rows = 8 if cfg.vbf_fraction > 0 else 6
    u = draws.float32_uniforms(rng.bit_generator.random_raw(rows // 2 * n), rows)
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
    np.negative(tail, out=tail)
    pt_max = np.power(tail, f32(-1.0 / isr.alpha), out=tail)
    pt_max *= f32(isr.pt0)
    u_vbf = u[6] if cfg.vbf_fraction > 0 else np.ones(1, dtype=f32)
    if cfg.vbf_fraction <= 0:
        u_vbf = np.broadcast_to(u_vbf, (n,))
    block, violations = resonance_events(
        rng, z, cos_t, mass, k, pt_max, soft_r, u_vbf, kernel_parameters(cfg, det),
        hadronic_modes(), np.empty(draws.POOL), prune)
    block = finish_block(block)
    return block if prune else (block, violations)


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


@numba.njit(cache=True)
def _z_and_multiplicity(u_z, u_k, z_table, cdf, guide):
    """Lepton fraction z (tabulated inverse CDF, as kinematics.lepton_z) and the
    ISR multiplicity K (guide-table inverse CDF, as kinematics.guide_sampler)."""
    n = u_z.size
    z = np.empty(n, dtype=np.float32)
    k = np.empty(n, dtype=np.int64)
    last = np.float32(z_table.size - 1)
    cells = guide.size
    for i in range(n):
        t = u_z[i] * last
        j = min(int(t), z_table.size - 1)
        lo = z_table[j]
        z[i] = lo + (z_table[min(j + 1, z_table.size - 1)] - lo) * (t - np.float32(j))
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
