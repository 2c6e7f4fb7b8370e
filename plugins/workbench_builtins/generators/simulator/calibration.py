"""Free constants of the simulator and where each value comes from.

Physics constants are PDG values.  The "tuned" ones (spectra, multiplicities,
resolutions) were adjusted by hand against the reference samples in
``/work/shared/reference-data`` (see docs/simulator.md, section Calibration):
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
class TTbar:
    mass_excess_shape: float = 1.6
    mass_excess_scale: float = 70.0
    """m_tt - 2 m_t ~ Gamma(shape, scale) (GeV): threshold rise and falling tail."""
    rapidity_sigma: float = 1.0
    isr: ISR = field(default_factory=lambda: ISR(rate=3.0, shape=1.0, pt0=11.0, alpha=1.9, eta_sigma=2.2))
    fake_fraction: float = 0.45
    """Share of selected-like events whose tau candidate is a W -> q q' jet."""
    fake_response: float = 0.85
    fake_response_sigma: float = 0.15


@dataclass(frozen=True)
class Diboson:
    channels: tuple = (("WW", 0.70), ("WZ", 0.20), ("ZZ", 0.10))
    """WW: W -> l nu, W -> tau_h nu; WZ: Z -> tau tau (l tau_h), W -> q q';
    ZZ: Z -> tau tau (l tau_h), Z -> nu nu."""
    mass_excess_shape: float = 1.3
    mass_excess_scale: float = 60.0
    rapidity_sigma: float = 1.5
    isr: ISR = field(default_factory=lambda: ISR(rate=2.0, shape=2.0, pt0=11.0, alpha=1.9, eta_sigma=2.2))


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
    soft_response: float = 0.6
    """Fraction of unclustered (soft + sub-threshold) recoil seen by the MET soft term."""
    soft_noise: float = 7.0
    """Gaussian pile-up/noise on each MET component (GeV), for an average event."""
    pileup_shape: float = 1.0
    """Event-to-event pile-up activity ~ Gamma(shape)/shape: the noise variance
    scales with it, which gives MET and pT_tot their long tails."""


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
