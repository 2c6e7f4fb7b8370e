"""FAIR Universe inference workbench: measure mu with ML under systematic uncertainties.

This module is the public face for plugin authors: everything a strategy needs
(the event container and schema, the nuisance parameters and their priors, the
protocols, parameter declaration, seeds, the hook marker) is importable from
``workbench`` itself.  Deeper modules are the core's own layout::

    data/              events, schema, DER_ features, parquet/ROOT I/O, streaming
    systematics/       nuisance parameters, the shift engine, its random stream
    pseudo_experiments the plan of PEs and the one draw of a PE
    plugin/            hook specifications, protocols, parameters, registry
    toolkit/           shared machinery for strategies (binning, profile fits, ...)
    pipeline           generate samples -> train -> evaluate one PE
    scoring            the challenge score
    run/               runner, executors, checkpoint, diagnostics
    outputs/           result files, plots, report, workspace export
    cli                every ``workbench`` subcommand
"""

from workbench._version import __version__
from workbench.data.events import Events, SchemaError
from workbench.data.schema import (
    DERIVED,
    EXPECTED_EVENTS,
    FEATURES,
    PRIMARY,
    PROCESSES,
    SIGNAL,
    UNDEFINED,
)
from workbench.plugin.hookspecs import HOOK_API_VERSION, hookimpl
from workbench.plugin.params import ParameterError, resolve_params
from workbench.plugin.protocols import (
    BinnedLikelihood,
    ChunkedGenerator,
    Classifier,
    CountsInterval,
    DescribedTemplates,
    Diagnostic,
    DiagnosticContext,
    Generator,
    GradientClassifier,
    IntervalResult,
    IntervalStrategy,
    LikelihoodTemplates,
    ReparametrisedTemplates,
    SimulatedStatistic,
    Templates,
    TemplateStrategy,
    TrainingData,
)
from workbench.seeds import derive_seed
from workbench.systematics.nuisance import (
    NP_NAMES,
    PRIORS,
    NuisanceParameters,
    Prior,
    draw_nuisances,
)

__all__ = [
    "BinnedLikelihood",
    "ChunkedGenerator",
    "Classifier",
    "CountsInterval",
    "DERIVED",
    "DescribedTemplates",
    "Diagnostic",
    "DiagnosticContext",
    "EXPECTED_EVENTS",
    "Events",
    "FEATURES",
    "Generator",
    "GradientClassifier",
    "HOOK_API_VERSION",
    "IntervalResult",
    "IntervalStrategy",
    "LikelihoodTemplates",
    "NP_NAMES",
    "NuisanceParameters",
    "PRIMARY",
    "PRIORS",
    "PROCESSES",
    "ParameterError",
    "Prior",
    "ReparametrisedTemplates",
    "SIGNAL",
    "SchemaError",
    "SimulatedStatistic",
    "TemplateStrategy",
    "Templates",
    "TrainingData",
    "UNDEFINED",
    "__version__",
    "derive_seed",
    "draw_nuisances",
    "hookimpl",
    "resolve_params",
]


def __dir__() -> list[str]:
    return list(__all__)
