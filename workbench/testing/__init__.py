"""Test kit for plugin authors: small samples, a TrainingData, a fitted toy
classifier, and conformance checks of a strategy against the protocols.

::

    from workbench.testing import check_interval_strategy, small_training_data

    def test_my_interval_conforms():
        data = small_training_data()
        check_interval_strategy(MyInterval(), data, classifier=FisherClassifier().fitted(data))

The pytest fixtures ``workbench_events``, ``workbench_training_data`` and
``workbench_classifier`` come with the workbench (a ``pytest11`` entry point,
:mod:`workbench.testing.fixtures`).  The samples come from the registered
``simulator`` generator (through the registry, as a spec would get them), so no
file is needed and the same seed gives the same events.
"""

from workbench.testing.checks import (
    ConformanceError,
    check_classifier,
    check_generator,
    check_interval_strategy,
    check_template_strategy,
)
from workbench.testing.samples import FisherClassifier, small_events, small_training_data

__all__ = [
    "ConformanceError",
    "FisherClassifier",
    "check_classifier",
    "check_generator",
    "check_interval_strategy",
    "check_template_strategy",
    "small_events",
    "small_training_data",
]
