"""Detector response and the stored-dataset selection.

Resolution smearing of lepton, hadronic tau and jets; acceptance and the
dataset's low thresholds; jets above threshold form the jet list (the leading
two stored, all counted in PRI_n_jets and summed in PRI_jet_all_pt); MET is
minus the sum of everything measured: reconstructed objects, the soft term (a
fraction of the unclustered recoil) and Gaussian noise.  Because the truth is
exactly balanced, a perfect detector reproduces the neutrinos' pT as MET.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from workbench.data.schema import PRIMARY
from workbench_builtins.generators.simulator import calibration as cal
from workbench_builtins.generators.simulator import jets
from workbench_builtins.generators.simulator import kinematics as kin

if TYPE_CHECKING:
    from workbench_builtins.generators.simulator.processes import Truth


def _smear(rng, pt, rel_sigma, gauss=None):
    if gauss is None:
        gauss = rng.standard_normal(pt.shape)
    return pt * np.maximum(1.0 + rel_sigma * gauss, 0.05)


def lepton_response(true_pt, gauss, det: cal.Detector):
    """Measured lepton pT for standard-normal draws ``gauss``."""
    return _smear(None, true_pt, det.lep_resolution, gauss)


def had_response(true_pt, gauss, det: cal.Detector):
    """Raw (uncalibrated) and calibrated tau_h pT for standard-normal draws ``gauss``."""
    sigma = np.sqrt(det.had_stochastic**2 / np.maximum(true_pt, 1.0) + det.had_resolution**2)
    raw = _smear(None, true_pt, sigma, gauss)
    return raw, det.had_scale * raw


def select_visible(rng, truth: Truth, det: cal.Detector):
    """Smeared lepton and tau pT and the mask of events passing their selection.

    The smearing Gaussians come from the truth when its generator drew them
    already (to select early), else from ``rng``."""
    g_lep = truth.lep_gauss if truth.lep_gauss is not None else rng.standard_normal(truth.lep.shape[1])
    lep_pt = lepton_response(kin.pt(truth.lep), g_lep, det)
    g_had = truth.had_gauss if truth.had_gauss is not None else rng.standard_normal(truth.had.shape[1])
    had_raw, had_pt = had_response(kin.pt(truth.had), g_had, det)
    lep_eta, had_eta = kin.eta(truth.lep), kin.eta(truth.had)
    ok = (
        (lep_pt > cal.LEP_PT_MIN)
        & (had_pt > cal.HAD_PT_MIN)
        & (np.abs(lep_eta) < cal.LEP_ETA_MAX)
        & (np.abs(had_eta) < cal.HAD_ETA_MAX)
    )
    return ok, lep_pt, lep_eta, had_pt, had_eta, had_raw


TAU_RULES = {"merge": jets.TAU_MERGE, "remove": jets.TAU_REMOVE, "reject": jets.TAU_REJECT}


@functools.lru_cache(maxsize=32)
def jet_parameters(det: cal.Detector) -> np.ndarray:
    """The packed parameter vector of jets.event_jets for a detector."""
    if det.tau_cone not in TAU_RULES:
        raise ValueError(f"unknown Detector tau_cone {det.tau_cone!r}; valid: {sorted(TAU_RULES)}")
    par = np.empty(jets.JET_PARAMETERS)
    par[jets.JP_R2] = det.jet_radius**2
    par[jets.JP_SCALE] = det.jet_scale
    par[jets.JP_NOISE] = det.jet_noise
    par[jets.JP_STOCH] = det.jet_stochastic
    par[jets.JP_CONST] = det.jet_constant
    par[jets.JP_PT_MIN] = cal.JET_PT_MIN
    par[jets.JP_ETA_MAX] = cal.JET_ETA_MAX
    par[jets.JP_OVERLAP2] = det.overlap_dr**2
    par[jets.JP_ISO2] = det.iso_cone**2
    par[jets.JP_ISO_RATIO] = det.iso_ratio
    par[jets.JP_TAU_ETA_MAX] = cal.HAD_ETA_MAX
    par[jets.JP_SLOTS] = cal.FAKE_WEIGHT_MAX
    par[jets.JP_FAKE_SCALE] = det.fake_tau_scale
    par[jets.JP_HAD_MIN] = cal.HAD_PT_MIN
    par[jets.JP_TAU_RULE] = TAU_RULES[det.tau_cone]
    par[jets.JP_FAKE_SLOPE] = det.fake_rate_slope
    par[jets.JP_FAKE_GLUON] = det.gluon_fake_factor
    par[jets.JP_FAKE_B] = det.b_fake_factor
    par[jets.JP_B_RESPONSE] = det.b_jet_response
    par[jets.JP_B_SL_PROB] = det.b_semileptonic
    par[jets.JP_B_SL_LOSS] = det.b_neutrino_loss
    par[jets.JP_COS_NEAR] = np.cos(max(det.iso_cone, det.overlap_dr))
    par.flags.writeable = False
    return par


def reconstruct(rng, truth: Truth, det: cal.Detector) -> np.ndarray:
    """PRI_ block (16, m) float32 (PRIMARY rows) of the events passing the
    stored-dataset selection: lepton and real tau_h selected first, then the
    jets of the survivors (jets.reconstruct_jets: clustering, isolation,
    overlaps, the fake tau candidate), the lepton-tau separation, the MET."""
    fake = truth.fake if truth.fake is not None else np.zeros(truth.lep.shape[1], dtype=bool)
    ok, lep_pt, lep_eta, had_pt, had_eta, had_raw = select_visible(rng, truth, det)
    ok |= fake & (lep_pt > cal.LEP_PT_MIN) & (np.abs(lep_eta) < cal.LEP_ETA_MAX)
    sel = np.flatnonzero(ok)
    n = sel.size
    lep, had = truth.lep[:, sel], truth.had[:, sel]
    lep_pt, lep_eta, had_raw, had_eta, fake = lep_pt[sel], lep_eta[sel], had_raw[sel], had_eta[sel], fake[sel]
    lep_phi, had_phi = kin.phi(lep), kin.phi(had)

    # partons of the selected events, re-indexed and event-major
    new_index = np.full(ok.size, -1)
    new_index[sel] = np.arange(n)
    p = truth.partons
    ev = new_index[p.event]
    keep = np.flatnonzero(ev >= 0)
    order = keep[np.argsort(ev[keep], kind="stable")]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(ev[order], minlength=n), out=offsets[1:])
    ppt, peta, pphi, pkind = p.pt[order], p.eta[order], p.phi[order], p.kinds()[order]
    pc, ps = kin.cos_sin(pphi)
    gauss = rng.standard_normal(ppt.size)
    u_fake = rng.random(n)

    block = np.empty((len(PRIMARY), n))
    lep_true = kin.pt(lep)
    had_true = np.where(fake, 1.0, kin.pt(had))
    vis, tau_add, ftau, good = jets.reconstruct_jets(
        offsets, ppt, peta, pphi, pc, ps, gauss, pkind, lep[1:] / lep_true, lep_pt, had[1:] / had_true,
        fake, u_fake, jet_parameters(det), block)
    # the tau candidate: the visible tau_h (at its raw scale, plus any jet merged
    # into its cone), or the jet faking it
    had_x = np.where(fake, ftau[0] * np.cos(ftau[2]), had_raw * had[1] / had_true + tau_add[0])
    had_y = np.where(fake, ftau[0] * np.sin(ftau[2]), had_raw * had[2] / had_true + tau_add[1])
    had_raw = np.hypot(had_x, had_y)
    had_pt = np.where(fake, det.fake_tau_scale * det.jet_scale, det.had_scale) * had_raw
    had_eta = np.where(fake, ftau[1], had_eta)
    had_phi = np.arctan2(had_y, had_x)
    dphi = np.abs(lep_phi - had_phi)
    dphi = np.where(dphi > np.pi, 2.0 * np.pi - dphi, dphi)
    separated = (lep_eta - had_eta) ** 2 + dphi**2 >= det.overlap_dr**2
    good &= separated & (had_pt > cal.HAD_PT_MIN)

    # MET: minus the measured transverse momentum, the tau at its uncalibrated
    # (raw) scale -- the calibrated objects differ from it, which is what gives
    # DER_pt_tot its width; a fake tau's jet is in ``vis`` already
    vis[0] += lep_pt * lep[1] / lep_true + np.where(fake, 0.0, had_x)
    vis[1] += lep_pt * lep[2] / lep_true + np.where(fake, 0.0, had_y)
    soft_x, soft_y = truth.soft[0, sel], truth.soft[1, sel]
    activity = rng.gamma(det.pileup_shape, 1.0 / det.pileup_shape, n)
    noise = rng.standard_normal((2, n)) * (det.soft_noise * np.sqrt(activity))
    met_x = -(vis[0] + det.soft_response * soft_x + noise[0])
    met_y = -(vis[1] + det.soft_response * soft_y + noise[1])

    row = {name: i for i, name in enumerate(PRIMARY)}
    for name, values in (
        ("PRI_lep_pt", lep_pt), ("PRI_lep_eta", lep_eta), ("PRI_lep_phi", lep_phi),
        ("PRI_had_pt", had_pt), ("PRI_had_eta", had_eta), ("PRI_had_phi", had_phi),
        ("PRI_met", np.sqrt(met_x * met_x + met_y * met_y)), ("PRI_met_phi", np.arctan2(met_y, met_x)),
    ):
        block[row[name]] = values
    return block[:, good].astype(np.float32)
