"""FAIR Universe inference workbench: measure mu with ML under systematic uncertainties."""

from .events import Events, SchemaError
from .hookspecs import HOOK_API_VERSION, hookimpl
from .nuisance import NP_NAMES, PRIORS, NuisanceParameters
from .protocols import IntervalResult, TrainingData

__version__ = "0.1.0"

__all__ = [
    "Events",
    "HOOK_API_VERSION",
    "IntervalResult",
    "NP_NAMES",
    "NuisanceParameters",
    "PRIORS",
    "SchemaError",
    "TrainingData",
    "__version__",
    "hookimpl",
]
