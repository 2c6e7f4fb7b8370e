"""Shared fixtures: the reference samples of the public dataset (see tests/data/README.md)
and larger realistic inputs built from them."""

from __future__ import annotations

import numpy as np
import pytest
from toys import (
    REFERENCE_SAMPLE,
    jittered_events,
    read_parquet_columns,
)

from workbench.data.events import Events


@pytest.fixture(scope="session")
def reference_columns() -> dict[str, np.ndarray]:
    """The 500-event reference sample as raw columns, exactly as stored."""
    return read_parquet_columns(REFERENCE_SAMPLE)


@pytest.fixture(scope="session")
def reference_sample(reference_columns) -> Events:
    """The 500-event reference sample (all 28 features, weights, labels) as Events."""
    return Events.from_columns(reference_columns)


@pytest.fixture(scope="session")
def generated_events() -> Events:
    """20k realistic labelled events around the thresholds (see :func:`jittered_events`)."""
    return jittered_events(20_000, seed=2024)
