"""Detector response and the stored-dataset selection.

Resolution smearing of lepton, hadronic tau and jets; acceptance and the
dataset's low thresholds; jets above threshold form the jet list (the leading
two stored, all counted in PRI_n_jets and summed in PRI_jet_all_pt); MET is
minus the sum of everything measured: reconstructed objects, the soft term (a
fraction of the unclustered recoil) and Gaussian noise.  Because the truth is
exactly balanced, a perfect detector reproduces the neutrinos' pT as MET.
"""

from __future__ import annotations

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


def reconstruct(rng, truth: Truth, det: cal.Detector) -> np.ndarray:
    """PRI_ block (16, m) float32 (PRIMARY rows) of the events passing the
    stored-dataset selection."""
    ok, lep_pt, lep_eta, had_pt, had_eta, had_raw = select_visible(rng, truth, det)
    sel = np.flatnonzero(ok)
    n = sel.size
    lep, had = truth.lep[:, sel], truth.had[:, sel]
    lep_pt, had_raw = lep_pt[sel], had_raw[sel]

    # partons of the selected events, re-indexed
    new_index = np.full(ok.size, -1)
    new_index[sel] = np.arange(n)
    p = truth.partons
    ev = new_index[p.event]
    keep = ev >= 0
    ev, ppt, peta, pphi = ev[keep], p.pt[keep], p.eta[keep], p.phi[keep]
    gauss = rng.standard_normal(ppt.shape)

    block = np.empty((len(PRIMARY), n))
    # jets into the block; the partons in acceptance (jets and sub-threshold ones,
    # particle-flow like) measured at their raw scale for the MET
    vis = jets.measure_partons(block, ev, ppt, peta, pphi, gauss, det.jet_scale, det.jet_noise,
                               det.jet_stochastic, det.jet_constant, cal.JET_PT_MIN, cal.JET_ETA_MAX)
    # MET: minus the measured transverse momentum, the tau at its uncalibrated
    # (raw) scale -- the calibrated objects differ from it, which is what gives
    # DER_pt_tot its width
    lep_true, had_true = kin.pt(lep), kin.pt(had)
    vis[0] += lep_pt * lep[1] / lep_true + had_raw * had[1] / had_true
    vis[1] += lep_pt * lep[2] / lep_true + had_raw * had[2] / had_true
    soft_x, soft_y = truth.soft[0, sel], truth.soft[1, sel]
    activity = rng.gamma(det.pileup_shape, 1.0 / det.pileup_shape, n)
    noise = rng.standard_normal((2, n)) * (det.soft_noise * np.sqrt(activity))
    met_x = -(vis[0] + det.soft_response * soft_x + noise[0])
    met_y = -(vis[1] + det.soft_response * soft_y + noise[1])

    row = {name: i for i, name in enumerate(PRIMARY)}
    for name, values in (
        ("PRI_lep_pt", lep_pt), ("PRI_lep_eta", lep_eta[sel]), ("PRI_lep_phi", kin.phi(lep)),
        ("PRI_had_pt", had_pt[sel]), ("PRI_had_eta", had_eta[sel]), ("PRI_had_phi", kin.phi(had)),
        ("PRI_met", np.sqrt(met_x * met_x + met_y * met_y)), ("PRI_met_phi", np.arctan2(met_y, met_x)),
    ):
        block[row[name]] = values
    return block.astype(np.float32)

