"""One seed in the spec determines every draw: named, stable sub-seeds."""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, *keys: str | int) -> int:
    """A 31-bit seed derived from the spec seed and a path of names/indices.

    Stable across processes and Python versions (no ``hash()``), independent
    streams for different paths (NumPy ``SeedSequence`` spawn keys).
    """
    spawn_key = tuple(
        k if isinstance(k, int) else zlib.crc32(str(k).encode()) for k in keys
    )
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=spawn_key)
    return int(ss.generate_state(1, dtype=np.uint32)[0] >> 1)
