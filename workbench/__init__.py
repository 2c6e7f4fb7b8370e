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
    AggregateInterval,
    BinnedLikelihood,
    ChunkedGenerator,
    Classifier,
    CountsInterval,
    DescribedTemplates,
    Diagnostic,
    DiagnosticContext,
    EdgedTemplates,
    FeatureClassifier,
    Generator,
    GradientClassifier,
    IntervalResult,
    IntervalStrategy,
    LikelihoodTemplates,
    ReparametrisedTemplates,
    ScoreTemplates,
    SimulatedStatistic,
    Templates,
    TemplateStrategy,
    TrainingData,
    TreeClassifier,
    TreeEnsemble,
)
from workbench.seeds import derive_seed
from workbench.systematics.nuisance import (
    NP_NAMES,
    PRIORS,
    SHAPE_NPS,
    WEIGHT_NPS,
    NuisanceParameters,
    Prior,
    draw_nuisances,
)

__all__ = [
    "AggregateInterval",
    "BinnedLikelihood",
    "ChunkedGenerator",
    "Classifier",
    "CountsInterval",
    "DERIVED",
    "DescribedTemplates",
    "Diagnostic",
    "DiagnosticContext",
    "EXPECTED_EVENTS",
    "EdgedTemplates",
    "Events",
    "FEATURES",
    "FeatureClassifier",
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
    "SHAPE_NPS",
    "SIGNAL",
    "SchemaError",
    "ScoreTemplates",
    "SimulatedStatistic",
    "TemplateStrategy",
    "Templates",
    "TrainingData",
    "TreeClassifier",
    "TreeEnsemble",
    "UNDEFINED",
    "WEIGHT_NPS",
    "__version__",
    "derive_seed",
    "draw_nuisances",
    "hookimpl",
    "resolve_params",
]


def __dir__() -> list[str]:
    return list(__all__)
