"""Free constants of the simulator and where each value comes from.

Physics constants are PDG values.  The "tuned" ones (spectra, multiplicities,
resolutions) were adjusted by hand against the reference samples in
``../shared/reference-data`` (copies in tests/data; see docs/simulator.md,
section Calibration):
each was moved until the quantiles of the feature it mainly drives matched the
reference within its statistical precision, then the realism report
(benchmarks/realism_report.py) was checked for all features.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

# --- selection of the stored (nominal) dataset ------------------------------
# Lowest values seen in the reference samples: lepton 20.02, hadronic tau 23.02,
# jet 22.29 GeV; largest |eta|: lepton 2.4999, jets 4.87.
LEP_PT_MIN = 20.0
HAD_PT_MIN = 23.0
JET_PT_MIN = 22.0
LEP_ETA_MAX = 2.5
HAD_ETA_MAX = 2.5
JET_ETA_MAX = 4.9
FAKE_WEIGHT_MAX = 3.0
"""Bound of an event's total fake weight (the sum over its jets of the fake
rate relative to a light-quark jet at the tau_h threshold; mean ~1.05 in
ttbar, above 3 in 2e-5 of the candidates, where it is capped): a uniform
point in [0, FAKE_WEIGHT_MAX) picks the faking jet or none (jets.event_jets),
so each jet fakes at its rate."""

# --- PDG masses and widths (GeV) --------------------------------------------
HIGGS_MASS, HIGGS_WIDTH = 125.0, 0.0041
Z_MASS, Z_WIDTH = 91.1876, 2.4952
W_MASS, W_WIDTH = 80.377, 2.085
TOP_MASS, TOP_WIDTH = 172.5, 1.42
B_MASS = 4.8

# Hadronic tau decays, grouped by the visible system's line shape; branching
# fractions relative to all hadronic decays (PDG: pi 10.8%, rho(pi pi0) 25.5%,
# a1 (3 pi incl. 3-prong) 18.6%, the rest (K, 4 pi, ...) split rho/a1-like).
TAU_HAD_MODES = (
    # (fraction, mass, width, lo, hi)
    (0.17, 0.13957, 0.0, 0.13957, 0.13957),  # tau -> pi nu
    (0.42, 0.7753, 0.149, 0.30, 1.70),  # tau -> rho nu (pi pi0), K* ...
    (0.41, 1.23, 0.42, 0.45, 1.75),  # tau -> a1 nu (3 pi), 4 pi, ...
)
TAU_LEPTONIC_SHARE_W = 0.15
"""Share of W -> lepton decays that go through W -> tau nu, tau -> l nu nu
(0.108 x 0.352 / (0.216 + 0.108 x 0.352))."""

W_HELICITY_LONG, W_HELICITY_LEFT = 0.70, 0.30
"""W helicity fractions in top decays (SM NNLO 0.687 / 0.311, measured 0.69 /
0.31): the charged lepton tends to go against the W's direction, so it is
softer than from an isotropic decay."""

# PDG branching fractions of the boson decays that give one lepton (e/mu) and
# one hadronic-tau candidate
BR_W_LEP = 0.1071 + 0.1063 + 0.1138 * 0.3521
"""W -> e nu, mu nu, and tau nu with tau -> l nu nu."""
BR_W_TAUH = 0.1138 * 0.6479
"""W -> tau nu, tau -> hadrons nu."""
BR_W_QQ = 0.6741
BR_Z_TAUTAU_LH = 0.03370 * 2.0 * 0.3521 * 0.6479
"""Z -> tau tau -> (l nu nu)(hadrons nu), either tau leptonic."""
BR_Z_NUNU = 0.2000
BR_Z_QQ = 0.6991

SQRT_S = 13000.0
"""LHC centre-of-mass energy (GeV) of the public dataset."""
PT_LIMIT = 0.5 * SQRT_S
"""Kinematic limit of an emission's transverse momentum, sqrt(s)/2 (x_T = 1)."""


@dataclass(frozen=True)
class ISR:
    """Initial-state radiation: negative-binomial number of emissions above
    ``pt0`` (mean ``rate``, shape ``shape``: 1 is the geometric "staircase"
    scaling of jet multiplicities, infinity is Poisson), power-law pT spectrum
    (index ``alpha``), Gaussian pseudorapidity; the hard system recoils against
    them plus a Gaussian intrinsic/soft kT."""

    rate: float
    shape: float = 2.0
    pt0: float = 12.0
    alpha: float = 1.6
    eta_sigma: float = 2.0
    kt_sigma: float = 6.0
    pt_break: float = 200.0
    alpha_high: float = 4.0
    scale_power: float = 0.0
    """t tbar and dibosons: the mean number of emissions grows with the hard
    system's mass m as (ln(m / pt0) / ln(m_ref / pt0))^scale_power (2: the
    Sudakov double logarithm; m_ref the pair's threshold), so that the events
    with more jets are also the harder ones; 0: a fixed rate (H, Z)."""
    """Above ``pt_break`` the spectrum is the fixed-order QCD tail: survival
    (pT_break/pT)^alpha_high (dN/dpT ~ pT^-5, the 2 -> 2 matrix element with
    falling parton luminosities, as the measured V + jet and Z pT spectra fall
    between 0.2 and 1 TeV), and nothing above the kinematic limit PT_LIMIT.
    A pure power law with alpha ~ 1.6-1.9 put ~1e-4 of the events above 1 TeV
    (one htautau batch had a 444 TeV tau)."""


@dataclass(frozen=True)
class Resonance:
    """H or Z -> tau tau produced with a rapidity spectrum and ISR recoil."""

    mass: float
    width: float
    mass_lo: float
    mass_hi: float
    rapidity_sigma: float
    isr: ISR
    angular_1pcos2: bool
    """Z: (1 + cos^2) tau angle (vector coupling, q qbar -> Z); H: isotropic (spin 0)."""
    vbf_fraction: float = 0.0
    """Share of events produced by vector-boson fusion (two forward tag jets)."""
    vbf_jet_pt_mean: float = 60.0
    vbf_jet_eta: float = 2.6


@dataclass(frozen=True)
class FSR:
    """Final-state radiation off the hard quarks (b, and W/Z -> q q'), at
    leading log in the boost-invariant (eta, phi) plane: emissions with
    dN = alpha dz/z dR/R, the gluon carrying the fraction z of the quark's pT
    (pt_min / pT_quark < z < z_max) at a distance R in [r_min, r_max] from it;
    the quark keeps the rest (pT vector conserved).  ``alpha`` is
    2 alpha_s C_F / pi ~ 0.1; below r_min (the jet radius) the gluon is inside
    the quark's jet and changes nothing."""

    alpha: float = 0.21
    r_min: float = 0.6
    r_max: float = 1.63
    pt_min: float = 5.0
    z_max: float = 0.5


TAU_ID_EFFICIENCY = 0.6
"""Hadronic-tau identification efficiency (Delphes ATLAS card: 0.6, flat)."""

# diboson channels: (lepton side V1, tau side V2)
V_W_LEP, V_Z_TAUTAU, V_W_TAUH, V_W_QQ, V_Z_QQ, V_Z_NUNU = range(6)
DIBOSON_CHANNELS = {
    "WW": (V_W_LEP, V_W_TAUH), "WW_fake": (V_W_LEP, V_W_QQ),
    "WZ": (V_Z_TAUTAU, V_W_QQ), "WZ_fake": (V_W_LEP, V_Z_QQ),
    "ZZ_nunu": (V_Z_TAUTAU, V_Z_NUNU), "ZZ_qq": (V_Z_TAUTAU, V_Z_QQ),
}
DIBOSON_FAKE = {"WW": False, "WW_fake": True, "WZ": False, "WZ_fake": True, "ZZ_nunu": False, "ZZ_qq": False}


@dataclass(frozen=True)
class TTbar:
    mass_excess_shape: float = 1.63
    mass_excess_scale: float = 118.0
    """m_tt - 2 m_t ~ Gamma(shape, scale) (GeV): threshold rise and falling tail
    (mean m_tt ~ 540 GeV before the selection)."""
    pdf_power: float = 4.0
    """High-x fall-off (1 - x)^p of the parton densities, which shapes the
    system's rapidity (processes.system_rapidity; gluons p ~ 5).  The top
    direction in the t tbar rest frame follows g g -> t tbar at leading order
    (processes.gg_ttbar_cos)."""
    isr: ISR = field(default_factory=lambda: ISR(rate=1.17, shape=3.0, pt0=16.5, alpha=1.55, eta_sigma=2.8,
                                                 pt_break=393.0, scale_power=1.62))
    """g g initial state: harder and more frequent radiation than the q qbar
    of Z / dibosons, the rate growing with m_tt (scale_power)."""
    fsr: FSR = field(default_factory=FSR)

    def fake_share(self, det: "Detector | None" = None) -> float:
        """Share of the candidates whose second W decays to q q' (a jet may fake
        the tau_h) rather than to tau_h nu: BR x efficiency, the fake side
        with the jet fake rate times FAKE_WEIGHT_MAX (the draw in
        jets.event_jets then keeps an event in proportion to its jets' rates)."""
        det = det or Detector()
        real = BR_W_TAUH * det.tau_id_efficiency
        fake = BR_W_QQ * det.jet_fake_rate * FAKE_WEIGHT_MAX
        return fake / (real + fake)


@dataclass(frozen=True)
class Diboson:
    cross_sections: tuple = (("WW", 118.7), ("WZ", 47.1), ("ZZ", 16.9))
    """Inclusive 13 TeV cross sections (pb; NNLO WW and ZZ, NLO WZ)."""
    mass_excess_shape: float = 1.3
    mass_excess_scale: float = 60.0
    pdf_power: float = 4.0
    """(1 - x)^p of the q qbar luminosity (valence ~3, sea ~7)."""
    peaking: float = 0.0
    isr: ISR = field(default_factory=lambda: ISR(rate=1.6, shape=2.0, pt0=11.0, alpha=1.9, eta_sigma=2.2))
    fsr: FSR = field(default_factory=FSR)

    def channel_shares(self, det: "Detector | None" = None):
        """(names, probabilities) of the DIBOSON_CHANNELS: cross section x
        branching fractions x tau identification (real tau_h) or jet fake rate x
        FAKE_WEIGHT_MAX (fake), both orderings of WW and ZZ counted."""
        det = det or Detector()
        sigma = dict(self.cross_sections)
        tau, fake = det.tau_id_efficiency, det.jet_fake_rate * FAKE_WEIGHT_MAX
        weights = {
            "WW": sigma["WW"] * 2.0 * BR_W_LEP * BR_W_TAUH * tau,
            "WW_fake": sigma["WW"] * 2.0 * BR_W_LEP * BR_W_QQ * fake,
            "WZ": sigma["WZ"] * BR_W_QQ * BR_Z_TAUTAU_LH * tau,
            "WZ_fake": sigma["WZ"] * BR_W_LEP * BR_Z_QQ * fake,
            "ZZ_nunu": sigma["ZZ"] * 2.0 * BR_Z_TAUTAU_LH * BR_Z_NUNU * tau,
            "ZZ_qq": sigma["ZZ"] * 2.0 * BR_Z_TAUTAU_LH * BR_Z_QQ * tau,
        }
        names = tuple(weights)
        total = sum(weights.values())
        return names, [weights[k] / total for k in names]


@dataclass(frozen=True)
class Detector:
    lep_resolution: float = 0.02
    had_scale: float = 1.12
    """Tau-jet energy response: the reconstructed tau_h is a narrow jet whose
    energy includes the underlying event/pile-up in its cone."""
    had_resolution: float = 0.08
    had_stochastic: float = 0.5
    """Tau_h: sigma/pT = had_stochastic/sqrt(pT) (+) had_resolution."""
    jet_scale: float = 1.05
    jet_noise: float = 3.0
    jet_stochastic: float = 0.75
    jet_constant: float = 0.05
    """Jets: sigma/pT = N/pT (+) S/sqrt(pT) (+) C."""
    b_jet_response: float = 0.955
    b_semileptonic: float = 0.4
    b_neutrino_loss: float = 0.64
    """b jets: response b_jet_response relative to a light jet (muons of
    semileptonic decays and wider fragmentation are not measured), and in a
    share b_semileptonic of them (b and cascade c -> l nu X, ~0.4 per b jet) a
    neutrino takes a fraction, uniform up to b_neutrino_loss, of the jet's pT;
    what is not measured is missing from the MET sum as well."""
    soft_response: float = 0.6
    """Fraction of unclustered (soft + sub-threshold) recoil seen by the MET soft term."""
    soft_noise: float = 7.0
    """Gaussian pile-up/noise on each MET component (GeV), for an average event."""
    pileup_shape: float = 1.0
    """Event-to-event pile-up activity ~ Gamma(shape)/shape: the noise variance
    scales with it, which gives MET and pT_tot their long tails."""
    jet_radius: float = 0.6
    """Cone radius of the jet clustering (the dataset's jets: anti-kt R = 0.6,
    the ATLAS Delphes card; no two reference jets are closer than 0.60)."""
    overlap_dr: float = 0.6
    """A jet within this distance of the lepton (or of the tau_h) is not a
    separate jet, and the lepton and tau_h are at least this far apart (in the
    reference no jet, lepton or tau_h pair is closer than 0.60)."""
    iso_cone: float = 0.5
    iso_ratio: float = 1.2
    """Lepton isolation: a jet within iso_cone of the lepton with more than
    iso_ratio of its pT vetoes the event (softer ones are removed from the jet
    list; the Delphes ATLAS card has 0.5 / 0.1 on the particles, the
    reference's ttbar low jet multiplicities want 1.2: a looser veto)."""
    tau_cone: str = "remove"
    """A jet in the real tau_h's cone: "merge" (the tau candidate is a jet of
    the same clustering and includes it), "remove" (dropped from the jet list)
    or "reject" (tau isolation vetoes the event)."""
    fake_tau_scale: float = 1.135
    """pT of a jet faking the tau_h relative to the calibrated jet (the tau
    calibration applied to a jet)."""
    tau_id_efficiency: float = TAU_ID_EFFICIENCY
    jet_fake_rate: float = 0.041
    fake_rate_slope: float = 1.19
    gluon_fake_factor: float = 0.25
    b_fake_factor: float = 0.5
    """Probability that a light-quark jet passes the tau_h identification, at
    the tau_h threshold, falling as (pT / HAD_PT_MIN)^-fake_rate_slope (wider,
    less tau-like jets at high pT); gluon and b jets (wider, more tracks) fake
    at these fractions of it.  With tau_id_efficiency it sets the share of
    fake tau_h."""


def default_processes() -> dict:
    return {
        "htautau": Resonance(
            mass=HIGGS_MASS, width=HIGGS_WIDTH, mass_lo=120.0, mass_hi=130.0,
            rapidity_sigma=1.8, isr=ISR(rate=3.0, shape=1.5, pt0=11.0, alpha=1.6),
            angular_1pcos2=False, vbf_fraction=0.15,
        ),
        "ztautau": Resonance(
            mass=Z_MASS, width=Z_WIDTH, mass_lo=50.0, mass_hi=200.0,
            rapidity_sigma=2.0, isr=ISR(rate=1.4, shape=1.0, pt0=11.0, alpha=1.9),
            angular_1pcos2=True,
        ),
        "ttbar": TTbar(),
        "diboson": Diboson(),
    }


def updated(config, overrides: dict):
    """A copy of a config dataclass with ``overrides`` (nested dicts for ISR)."""
    if not overrides:
        return config
    names = {f.name for f in fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"unknown {type(config).__name__} setting(s) {unknown}; valid: {sorted(names)}"
        )
    changes = {}
    for key, value in overrides.items():
        current = getattr(config, key)
        if isinstance(value, dict) and hasattr(current, "__dataclass_fields__"):
            value = updated(current, value)
        changes[key] = value
    return replace(config, **changes)
