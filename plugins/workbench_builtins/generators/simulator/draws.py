"""Random numbers in bulk for the phased kernels, from the batch's ``np.random.Generator``.

Every phase of the H/Z -> tau tau fast path draws what its candidates need as
whole arrays (a numba ``rng.standard_normal()`` call per value costs ~4 ns and
cannot be vectorised):

* :func:`uniforms`: float32 uniforms, two 24-bit values per 64-bit word (as
  NumPy's own float32 draws).  The words are SplitMix64 (Steele, Lea & Flood
  2014: a Weyl sequence through the MurmurHash3-style finaliser, passes
  BigCrush) keyed by one word of the batch's PCG64 per call: a counter-based
  generator whose loop LLVM vectorises (AVX-512 64-bit multiplies), ~0.4 ns a
  word against ~2.2 ns for ``bit_generator.random_raw``, which was 15% of the
  simulator's time.  Two calls' sequences overlap only if their keys fall
  within ~1e5 steps of each other: probability ~1e-14;
* :func:`normals`: float32 standard normals by Box-Muller from those words,
  with NumPy's SIMD float32 log/sqrt/cos/sin: ~1 ns a value against ~5 ns for
  ``rng.standard_normal(m)``.  The 24-bit radius uniform cuts the tails at
  5.8 sigma (probability 2e-8), far below any statistics the workbench uses;
* :func:`azimuths`: phi uniform in [-pi, pi) with its float32 cos and sin.

Everything advances the one Generator in a fixed order whose sizes depend only
on the draws before, so a batch is a deterministic function of its seed.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S8, _S27, _S30, _S31, _S40 = (np.uint64(v) for v in (8, 27, 30, 31, 40))
_LOW24 = np.uint64(0xFFFFFF)
_TWO_PI = np.float32(2.0 * math.pi)
_PI = np.float32(math.pi)


@numba.njit(cache=True)
def splitmix_uniforms(key, words):
    """2 * words float32 uniforms in [0, 1): word w's high 24 bits at w, its
    bits 8..31 at words + w (unit-stride stores keep the loop vectorised)."""
    out = np.empty(2 * words, dtype=np.float32)
    scale = np.float32(1.0 / 16777216.0)
    for w in range(words):
        z = key + np.uint64(w) * _GOLDEN
        z = (z ^ (z >> _S30)) * _MIX1
        z = (z ^ (z >> _S27)) * _MIX2
        z ^= z >> _S31
        out[w] = np.float32(z >> _S40) * scale
        out[words + w] = np.float32((z >> _S8) & _LOW24) * scale
    return out


def uniforms(rng, rows: int, n: int) -> np.ndarray:
    """(rows, n) float32 uniforms in [0, 1)."""
    key = np.uint64(rng.bit_generator.random_raw())
    return splitmix_uniforms(key, (rows * n + 1) // 2)[:rows * n].reshape(rows, n)


def normals(rng, n: int) -> np.ndarray:
    """n float32 standard normals (Box-Muller on 24-bit uniforms)."""
    half = (n + 1) // 2
    u = uniforms(rng, 2, half)
    r = np.subtract(np.float32(1.0), u[0], out=u[0])  # (0, 1]: log is finite
    np.log(r, out=r)
    r *= np.float32(-2.0)
    np.sqrt(r, out=r)
    phi = u[1]
    phi *= _TWO_PI
    out = np.empty(2 * half, dtype=np.float32)
    np.cos(phi, out=out[:half])
    np.sin(phi, out=out[half:])
    out[:half] *= r
    out[half:] *= r
    return out[:n]


def azimuths(rng, n: int):
    """(phi, cos phi, sin phi) float32 for n uniform azimuths in [-pi, pi)."""
    phi = uniforms(rng, 1, n)[0]
    phi *= _TWO_PI
    phi -= _PI
    return phi, np.cos(phi), np.sin(phi)
