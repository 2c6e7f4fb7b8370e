"""The nominal NP point of a run and the conversions between NP values and ``alpha``.

Every strategy that shifts the holdout to "where the pseudo-experiments are
centred" (template builders, the aggregated-feature cell bank, the sideband fit,
the adversarial probe) needs the same point, and every binned model that fits
NPs in prior standard deviations needs the same ``alpha <-> NP`` map.  They live
here so that the strategies agree on both without importing each other.

``alpha`` counts prior standard deviations from the prior's centre: for a
normal prior ``NP = loc + alpha scale``, for a log-normal one (soft_met) the
interpolation is in the log, ``NP = exp(loc + alpha scale)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from workbench.plugin.protocols import TrainingData
from workbench.systematics.nuisance import NuisanceParameters, Prior


def nominal_nuisances(data: TrainingData) -> NuisanceParameters:
    """The NP point PEs are centred on: randomised NPs at the prior median
    (normal: ``loc``; log-normal: ``exp(loc)``, i.e. soft_met = 1), others at
    ``data.fixed``."""
    fixed = getattr(data, "fixed", None) or NuisanceParameters()
    values = fixed.as_dict()
    for name in data.randomised:
        prior = data.priors[name]
        centre = np.exp(prior.loc) if prior.kind == "lognormal" else prior.loc
        values[name] = float(np.clip(centre, prior.low, prior.high))
    return NuisanceParameters(**values)


def np_value(name: str, alpha: float, priors: Mapping[str, Prior]) -> float:
    """The NP value at ``alpha`` prior standard deviations (log-normal: in the log),
    clipped into the NP's range."""
    prior = priors[name]
    if prior.kind == "lognormal":
        value = np.exp(prior.loc + alpha * prior.scale)
    elif prior.kind == "normal":
        value = prior.loc + alpha * prior.scale
    else:
        raise ValueError(f"prior kind {prior.kind!r} of {name!r} is not supported "
                         "(normal, lognormal)")
    return float(np.clip(value, prior.low, prior.high))


def np_alpha(name: str, value: float, priors: Mapping[str, Prior]) -> float:
    """The ``alpha`` of an NP value: the inverse of :func:`np_value` (no clipping)."""
    prior = priors[name]
    if prior.kind == "lognormal":
        return float((np.log(value) - prior.loc) / prior.scale)
    return float((value - prior.loc) / prior.scale)


def shape_variation_points(name: str, data: TrainingData) -> tuple[float, float]:
    """(down, up) NP values for the +-1 sigma templates of a shape NP.

    Normal prior: ``loc -+ scale``; log-normal: ``exp(loc -+ scale)`` so the
    interpolation parameter is the log of the NP.  Clipped into the NP's range.
    """
    return np_value(name, -1.0, data.priors), np_value(name, 1.0, data.priors)


__all__ = ["nominal_nuisances", "np_alpha", "np_value", "shape_variation_points"]
