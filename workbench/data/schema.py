"""The public dataset's schema: column names, process labels and expected yields.

Everything here mirrors the FAIR Universe HiggsML Uncertainty Challenge public
dataset (Zenodo 10.5281/zenodo.15131565) so that files written by the workbench
can be read by the official tools and vice versa.
"""

from __future__ import annotations

UNDEFINED = -25.0
"""Value the dataset uses for undefined quantities (missing jets, ...)."""

PRIMARY = (
    "PRI_lep_pt",
    "PRI_lep_eta",
    "PRI_lep_phi",
    "PRI_had_pt",
    "PRI_had_eta",
    "PRI_had_phi",
    "PRI_jet_leading_pt",
    "PRI_jet_leading_eta",
    "PRI_jet_leading_phi",
    "PRI_jet_subleading_pt",
    "PRI_jet_subleading_eta",
    "PRI_jet_subleading_phi",
    "PRI_n_jets",
    "PRI_jet_all_pt",
    "PRI_met",
    "PRI_met_phi",
)

DERIVED = (
    "DER_mass_transverse_met_lep",
    "DER_mass_vis",
    "DER_pt_h",
    "DER_deltaeta_jet_jet",
    "DER_mass_jet_jet",
    "DER_prodeta_jet_jet",
    "DER_deltar_had_lep",
    "DER_pt_tot",
    "DER_sum_pt",
    "DER_pt_ratio_lep_had",
    "DER_met_phi_centrality",
    "DER_lep_eta_centrality",
)

FEATURES = PRIMARY + DERIVED
"""The 28 features, in the public dataset's order."""

PROCESSES = ("htautau", "ztautau", "ttbar", "diboson")
"""Process labels (``detailed_labels``); the index is the internal process code."""

SIGNAL = "htautau"

EXPECTED_EVENTS = {
    "htautau": 1015.0,
    "ztautau": 1_002_395.0,
    "diboson": 3_783.0,
    "ttbar": 44_192.0,
}
"""Expected events per pseudo-experiment (10 fb^-1) after the nominal selection."""

LUMINOSITY_FB = 10.0

BOOKKEEPING = ("weights", "labels", "detailed_labels")
"""Non-feature columns of the public dataset."""


def process_code(name: str) -> int:
    """Internal integer code of a process label; raises with the valid labels."""
    try:
        return PROCESSES.index(name)
    except ValueError:
        raise ValueError(
            f"unknown process label {name!r}; valid labels: {', '.join(PROCESSES)}"
        ) from None
