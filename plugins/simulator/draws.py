"""Random numbers for the Numba kernels, from the batch's ``np.random.Generator``.

* :func:`float32_uniforms`: the per-candidate uniforms of the first stage come
  from ``bit_generator.random_raw`` (one 64-bit word gives two 24-bit float32
  uniforms, as NumPy's own float32 draws do), about half the cost of
  ``rng.random(dtype=np.float32)``.
* :func:`refill`: inside a kernel, a pool of float64 uniforms refilled with
  ``rng.random(POOL)`` -- a scalar ``rng.random()`` call from Numba costs ~6 ns,
  a pooled value ~2 ns.  Normals and gammas are drawn directly (``rng.
  standard_normal()`` is a fast ziggurat, ~4 ns).

Everything advances the one Generator in a fixed order, so a batch is a
deterministic function of its seed.
"""

from __future__ import annotations

import numba
import numpy as np

POOL = 8192


@numba.njit(cache=True)
def float32_uniforms(raw, rows):
    """(rows, n) float32 uniforms in [0, 1) from ``rows // 2 * n`` raw 64-bit words."""
    n = raw.size * 2 // rows
    out = np.empty((rows, n), dtype=np.float32)
    scale = np.float32(1.0 / 16777216.0)
    for r in range(rows // 2):
        for i in range(n):
            w = raw[r * n + i]
            out[2 * r, i] = np.float32(w >> np.uint64(40)) * scale
            out[2 * r + 1, i] = np.float32((w >> np.uint64(8)) & np.uint64(0xFFFFFF)) * scale
    return out


RESERVE = 256
"""Uniforms a kernel may take per candidate after its pool check (no check per draw)."""


@numba.njit(cache=True)
def refill(rng, pool):
    """Refill the uniform pool from ``rng``; returns the next index (0).

    A kernel checks ``p + RESERVE > pool.size`` once per candidate, calls this
    when true (dropping the few values left), then takes ``pool[p]; p += 1``
    inline: a function call per draw would cost ~4x more."""
    pool[:] = rng.random(pool.size)
    return 0
