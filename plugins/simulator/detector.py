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

from . import calibration as cal
from . import kinematics as kin
from workbench.schema import PRIMARY, UNDEFINED

if TYPE_CHECKING:
    from .processes import Truth


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


def reconstruct(rng, truth: Truth, det: cal.Detector) -> dict[str, np.ndarray]:
    """PRI_ columns (float64) of the events passing the stored-dataset selection."""
    ok, lep_pt, lep_eta, had_pt, had_eta, had_raw = select_visible(rng, truth, det)
    sel = np.flatnonzero(ok)
    n = sel.size
    lep_phi, had_phi = kin.phi(truth.lep[:, sel]), kin.phi(truth.had[:, sel])
    lep_pt, lep_eta, had_pt, had_eta = lep_pt[sel], lep_eta[sel], had_pt[sel], had_eta[sel]
    had_raw = had_raw[sel]

    # partons of the selected events, re-indexed
    new_index = np.full(ok.size, -1)
    new_index[sel] = np.arange(n)
    p = truth.partons
    ev = new_index[p.event]
    keep = ev >= 0
    ev, ppt, peta, pphi = ev[keep], p.pt[keep], p.eta[keep], p.phi[keep]

    sigma = np.sqrt(
        (det.jet_noise / ppt) ** 2 + det.jet_stochastic**2 / ppt + det.jet_constant**2
    )
    jet_raw = _smear(rng, ppt, sigma)
    jpt = det.jet_scale * jet_raw
    in_acc = np.abs(peta) < cal.JET_ETA_MAX
    is_jet = in_acc & (jpt > cal.JET_PT_MIN)
    cos, sin = np.cos(pphi), np.sin(pphi)

    # MET: minus the measured transverse momentum at the uncalibrated (raw)
    # scale of the tau and jets -- the calibrated objects differ from it, which
    # is what gives DER_pt_tot its width
    unclustered = in_acc & ~is_jet
    vis_x = lep_pt * np.cos(lep_phi) + had_raw * np.cos(had_phi)
    vis_y = lep_pt * np.sin(lep_phi) + had_raw * np.sin(had_phi)
    vis_x += kin.segment_sum(np.where(is_jet, jet_raw, 0.0) * cos, ev, n)
    vis_y += kin.segment_sum(np.where(is_jet, jet_raw, 0.0) * sin, ev, n)
    # sub-threshold jets are measured (particle-flow like) at their raw scale
    vis_x += kin.segment_sum(np.where(unclustered, jet_raw, 0.0) * cos, ev, n)
    vis_y += kin.segment_sum(np.where(unclustered, jet_raw, 0.0) * sin, ev, n)
    soft_x, soft_y = truth.soft[0, sel], truth.soft[1, sel]
    activity = rng.gamma(det.pileup_shape, 1.0 / det.pileup_shape, n)
    noise = rng.standard_normal((2, n)) * (det.soft_noise * np.sqrt(activity))
    met_x = -(vis_x + det.soft_response * soft_x + noise[0])
    met_y = -(vis_y + det.soft_response * soft_y + noise[1])

    cols = {
        "PRI_lep_pt": lep_pt, "PRI_lep_eta": lep_eta, "PRI_lep_phi": lep_phi,
        "PRI_had_pt": had_pt, "PRI_had_eta": had_eta, "PRI_had_phi": had_phi,
        "PRI_met": np.hypot(met_x, met_y), "PRI_met_phi": np.arctan2(met_y, met_x),
    }
    cols.update(jet_columns(ev[is_jet], jpt[is_jet], peta[is_jet], pphi[is_jet], n))
    return {name: cols[name] for name in PRIMARY}


def jet_columns(event, pt, eta, phi, n) -> dict[str, np.ndarray]:
    """Leading/subleading kinematics, count and scalar sum of a ragged jet list."""
    n_jets = np.bincount(event, minlength=n)
    all_pt = kin.segment_sum(pt, event, n)
    # leading: per-event maximum; subleading: maximum of the rest
    lead_pt = np.full(n, -np.inf)
    np.maximum.at(lead_pt, event, pt)
    is_lead = pt == lead_pt[event]
    # ties (identical pT in one event) are practically impossible for smeared floats
    rest = ~is_lead
    sub_pt = np.full(n, -np.inf)
    np.maximum.at(sub_pt, event[rest], pt[rest])
    is_sub = rest & (pt == sub_pt[event])
    out = {"PRI_n_jets": n_jets.astype(np.float64), "PRI_jet_all_pt": all_pt}
    for name, mask, has in (("leading", is_lead, n_jets >= 1), ("subleading", is_sub, n_jets >= 2)):
        for var, values in (("pt", pt), ("eta", eta), ("phi", phi)):
            col = np.full(n, UNDEFINED)
            col[event[mask]] = values[mask]
            col[~has] = UNDEFINED
            out[f"PRI_jet_{name}_{var}"] = col
    return out
