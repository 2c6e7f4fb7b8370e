"""workbench.systematics.legacy_random against NumPy's RandomState, value for value."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.systematics.legacy_random import standard_normal


@pytest.mark.parametrize("size", [0, 1, 2, 3, 155, 156, 157, 623, 624, 625, 4999, 100_001])
@pytest.mark.parametrize("seed", [0, 1, 7, 31415, 2**32 - 1])
def test_bit_identical_to_randomstate(seed, size):
    """Every size class: odd sizes (the cached second value of a pair), candidate
    counts around a 624-word twist, several chunks."""
    expected = np.random.RandomState(seed).standard_normal(size)
    np.testing.assert_array_equal(standard_normal(seed, size), expected)


def test_long_stream_spans_many_twists():
    """2.5M values: ~5000 twists in one chunk."""
    n = 2_500_001
    np.testing.assert_array_equal(
        standard_normal(12345, n), np.random.RandomState(12345).standard_normal(n)
    )


@pytest.mark.parametrize("margin", [0.3, 0.9])
def test_stream_continues_across_short_chunks(monkeypatch, margin):
    """Chunks too short for the request: the next chunk continues the same state."""
    from workbench.systematics import legacy_random

    monkeypatch.setattr(legacy_random, "MARGIN", margin)
    n = 50_001
    np.testing.assert_array_equal(
        standard_normal(99, n), np.random.RandomState(99).standard_normal(n)
    )


def test_bad_seed_is_rejected_like_numpy():
    with pytest.raises(ValueError):
        standard_normal(-1, 3)
