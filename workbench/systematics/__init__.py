"""The six nuisance parameters and the engine that applies them to events.

``nuisance`` holds the NP table (priors, clips, the shape/weight split);
``engine`` applies tes/jes/soft_met (``shifts``: the compiled per-event kernel)
and the weight scales, with the thresholds and DER_ recomputation of the
challenge's reference; ``legacy_random`` is its bit-exact Gaussian stream.
"""

from workbench.systematics.engine import apply_systematics, apply_weight_scales
from workbench.systematics.nuisance import (
    NP_NAMES,
    PRIORS,
    SHAPE_NPS,
    WEIGHT_NPS,
    NuisanceParameters,
    Prior,
    draw_nuisances,
)

__all__ = ["NP_NAMES", "PRIORS", "SHAPE_NPS", "WEIGHT_NPS", "NuisanceParameters", "Prior",
           "apply_systematics", "apply_weight_scales", "draw_nuisances"]
