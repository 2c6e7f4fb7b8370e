"""The 12 derived (DER_) features, recomputed columnar from the primaries.

Definitions follow the public dataset (as documented by the challenge and its
reference package); computed in float64 and returned as float32 like the
dataset.  Undefined values (fewer than two jets) are -25.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .schema import DERIVED, UNDEFINED


def _wrap(dphi: np.ndarray) -> np.ndarray:
    """Azimuthal difference folded into [-pi, pi)."""
    return np.mod(dphi + 3.0 * np.pi, 2.0 * np.pi) - np.pi


def compute_derived(pri: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return the DER_ columns (float32) for a mapping of PRI_ columns."""
    f64 = {k: np.asarray(pri[k], dtype=np.float64) for k in pri if k.startswith("PRI_")}
    n_jets = f64["PRI_n_jets"]
    has1 = n_jets >= 1
    has2 = n_jets >= 2

    lep_pt, lep_eta, lep_phi = f64["PRI_lep_pt"], f64["PRI_lep_eta"], f64["PRI_lep_phi"]
    had_pt, had_eta, had_phi = f64["PRI_had_pt"], f64["PRI_had_eta"], f64["PRI_had_phi"]
    met, met_phi = f64["PRI_met"], f64["PRI_met_phi"]

    lep_px, lep_py = lep_pt * np.cos(lep_phi), lep_pt * np.sin(lep_phi)
    lep_pz, lep_p = lep_pt * np.sinh(lep_eta), lep_pt * np.cosh(lep_eta)
    had_px, had_py = had_pt * np.cos(had_phi), had_pt * np.sin(had_phi)
    had_pz, had_p = had_pt * np.sinh(had_eta), had_pt * np.cosh(had_eta)
    met_x, met_y = met * np.cos(met_phi), met * np.sin(met_phi)

    def jet(prefix: str, present: np.ndarray):
        pt = np.where(present, f64[f"PRI_jet_{prefix}_pt"], 0.0)
        eta = np.where(present, f64[f"PRI_jet_{prefix}_eta"], 0.0)
        phi = np.where(present, f64[f"PRI_jet_{prefix}_phi"], 0.0)
        return pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)

    j1x, j1y, j1z, j1p = jet("leading", has1)
    j2x, j2y, j2z, j2p = jet("subleading", has2)

    out: dict[str, np.ndarray] = {}

    mt2 = (met + lep_pt) ** 2 - (met_x + lep_px) ** 2 - (met_y + lep_py) ** 2
    out["DER_mass_transverse_met_lep"] = np.sqrt(np.maximum(mt2, 0.0))

    mvis2 = (
        (lep_p + had_p) ** 2
        - (lep_px + had_px) ** 2
        - (lep_py + had_py) ** 2
        - (lep_pz + had_pz) ** 2
    )
    out["DER_mass_vis"] = np.sqrt(np.maximum(mvis2, 0.0))

    out["DER_pt_h"] = np.hypot(had_px + lep_px + met_x, had_py + lep_py + met_y)

    eta1, eta2 = f64["PRI_jet_leading_eta"], f64["PRI_jet_subleading_eta"]
    out["DER_deltaeta_jet_jet"] = np.where(has2, np.abs(eta2 - eta1), UNDEFINED)

    mjj2 = (j1p + j2p) ** 2 - (j1x + j2x) ** 2 - (j1y + j2y) ** 2 - (j1z + j2z) ** 2
    out["DER_mass_jet_jet"] = np.where(has2, np.sqrt(np.maximum(mjj2, 0.0)), UNDEFINED)

    out["DER_prodeta_jet_jet"] = np.where(has2, eta1 * eta2, UNDEFINED)

    dphi = np.abs(_wrap(lep_phi - had_phi))
    out["DER_deltar_had_lep"] = np.sqrt((lep_eta - had_eta) ** 2 + dphi**2)

    out["DER_pt_tot"] = np.hypot(
        had_px + lep_px + met_x + j1x + j2x, had_py + lep_py + met_y + j1y + j2y
    )

    out["DER_sum_pt"] = had_pt + lep_pt + f64["PRI_jet_all_pt"]

    with np.errstate(divide="ignore", invalid="ignore"):
        out["DER_pt_ratio_lep_had"] = lep_pt / had_pt

    out["DER_met_phi_centrality"] = _met_phi_centrality(met_phi, lep_phi, had_phi)
    out["DER_lep_eta_centrality"] = _lep_eta_centrality(lep_eta, eta1, eta2, has2)

    return {name: out[name].astype(np.float32) for name in DERIVED}


def _met_phi_centrality(met_phi, lep_phi, had_phi, epsilon: float = 1e-4):
    """(A + B) / sqrt(A^2 + B^2); lepton phi nudged by epsilon where degenerate."""

    def ratio(met_phi, lphi, had_phi):
        sign = np.sign(np.sin(had_phi - lphi))
        a = np.sin(met_phi - lphi) * sign
        b = np.sin(had_phi - met_phi) * sign
        den = np.sqrt(a * a + b * b)
        with np.errstate(divide="ignore", invalid="ignore"):
            val = np.where(den != 0, (a + b) / np.where(den != 0, den, 1.0), UNDEFINED)
        return val, den

    val, den = ratio(met_phi, lep_phi, had_phi)
    rows = np.flatnonzero(den == 0)
    if rows.size:  # recompute only the degenerate events (a handful, not the whole array)
        val[rows] = ratio(met_phi[rows], lep_phi[rows] + epsilon, had_phi[rows])[0]
    return val


def _lep_eta_centrality(lep_eta, eta1, eta2, has2, epsilon: float = 1e-4):
    """exp(-4 (eta_lep - mean)^2 / deta^2) for two-jet events, else -25."""
    diff2 = (eta1 - eta2) ** 2
    diff2 = np.where(diff2 == 0.0, epsilon, diff2)
    centre = 0.5 * (eta1 + eta2)
    with np.errstate(over="ignore"):
        val = np.exp(-4.0 / diff2 * (lep_eta - centre) ** 2)
    return np.where(has2, val, UNDEFINED)
