"""pytest fixtures for plugin tests (loaded through the ``pytest11`` entry point).

``workbench_events``: small labelled simulated events; ``workbench_training_data``:
a TrainingData as the runner builds it; ``workbench_classifier``: a fitted
:class:`~workbench.testing.FisherClassifier`.  Module-scoped: made once per test
module.
"""

from __future__ import annotations

import pytest

from workbench.data.events import Events
from workbench.plugin.protocols import TrainingData
from workbench.testing.samples import FisherClassifier, small_events, small_training_data


@pytest.fixture(scope="module")
def workbench_events() -> Events:
    return small_events(seed=0)


@pytest.fixture(scope="module")
def workbench_training_data() -> TrainingData:
    return small_training_data(seed=0)


@pytest.fixture(scope="module")
def workbench_classifier(workbench_training_data: TrainingData) -> FisherClassifier:
    return FisherClassifier().fitted(workbench_training_data)
