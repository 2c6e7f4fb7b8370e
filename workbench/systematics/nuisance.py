"""The six nuisance parameters: priors, clip ranges, shape/weight sets, draws in the reference order."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np


@dataclass(frozen=True)
class Prior:
    """A clipped prior: ``normal(loc, scale)`` or ``lognormal(loc, scale)`` (of the log)."""

    kind: str
    loc: float
    scale: float
    low: float
    high: float

    def draw(self, rng: np.random.RandomState) -> float:
        if self.kind == "normal":
            value = rng.normal(loc=self.loc, scale=self.scale)
        elif self.kind == "lognormal":
            value = rng.lognormal(mean=self.loc, sigma=self.scale)
        else:  # pragma: no cover - guarded by validation
            raise ValueError(f"unknown prior kind {self.kind!r}")
        return float(np.clip(value, self.low, self.high))


NP_NAMES = ("tes", "jes", "soft_met", "ttbar_scale", "diboson_scale", "bkg_scale")
"""The nuisance parameters in the reference draw order."""

SHAPE_NPS = ("tes", "jes", "soft_met")
"""NPs that move features (and so which events pass the thresholds)."""

WEIGHT_NPS = ("ttbar_scale", "diboson_scale", "bkg_scale")
"""NPs that only scale process weights."""

PRIORS: dict[str, Prior] = {
    "tes": Prior("normal", 1.0, 0.01, 0.9, 1.1),
    "jes": Prior("normal", 1.0, 0.01, 0.9, 1.1),
    "soft_met": Prior("lognormal", 0.0, 1.0, 0.0, 5.0),
    "ttbar_scale": Prior("normal", 1.0, 0.02, 0.8, 1.2),
    "diboson_scale": Prior("normal", 1.0, 0.25, 0.0, 2.0),
    "bkg_scale": Prior("normal", 1.0, 0.001, 0.99, 1.01),
}
"""Challenge priors (newest evaluation code) with their clip ranges."""


@dataclass(frozen=True)
class NuisanceParameters:
    """Values of the six NPs.  The defaults are the nominal (no systematic) point.

    ``soft_met = 0`` means no soft-term smearing at all.
    """

    tes: float = 1.0
    jes: float = 1.0
    soft_met: float = 0.0
    ttbar_scale: float = 1.0
    diboson_scale: float = 1.0
    bkg_scale: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            prior = PRIORS[f.name]
            if not np.isfinite(value) or not (prior.low <= value <= prior.high):
                raise ValueError(
                    f"nuisance parameter {f.name}={value!r} is outside its allowed "
                    f"range [{prior.low}, {prior.high}]"
                )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def replace(self, **changes: float) -> "NuisanceParameters":
        unknown = set(changes) - set(NP_NAMES)
        if unknown:
            raise KeyError(
                f"unknown nuisance parameter(s) {sorted(unknown)}; valid: {', '.join(NP_NAMES)}"
            )
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, float]) -> "NuisanceParameters":
        unknown = set(values) - set(NP_NAMES)
        if unknown:
            raise KeyError(
                f"unknown nuisance parameter(s) {sorted(unknown)}; valid: {', '.join(NP_NAMES)}"
            )
        return cls(**{k: float(v) for k, v in values.items()})


def draw_nuisances(
    rng: np.random.RandomState,
    randomise: tuple[str, ...] = NP_NAMES,
    priors: dict[str, Prior] = PRIORS,
) -> NuisanceParameters:
    """Draw the NPs in the reference order; those not in ``randomise`` stay nominal.

    Fixed NPs consume no draw, as in the reference's ``generate_pseudo_exp_data``.
    ``soft_met`` when not randomised is 0 (no smearing).
    """
    unknown = set(randomise) - set(NP_NAMES)
    if unknown:
        raise KeyError(
            f"unknown nuisance parameter(s) {sorted(unknown)}; valid: {', '.join(NP_NAMES)}"
        )
    values = {}
    for name in NP_NAMES:
        if name in randomise:
            values[name] = priors[name].draw(rng)
    return NuisanceParameters(**values)
