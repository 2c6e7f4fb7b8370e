"""NumPy's legacy Gaussian stream (``RandomState(seed).standard_normal``), compiled.

The reference draws the soft-MET term with ``np.random.RandomState(seed).normal``;
reproducing it bit for bit means replaying the same Mersenne Twister words
through the same polar Box-Muller method (Marsaglia's, with one value of each
pair cached for the next call).  NumPy does that one value at a time through
function pointers (~15 ns a value); here the MT19937 words come from a
vectorised twist-and-temper loop and the polar method runs over them in one
compiled loop (~2x faster).  The state (624 words, seeded by NumPy itself) is
taken from ``RandomState.get_state()``; ``log`` and ``sqrt`` are the C library's,
as in NumPy, so the draws are identical (tests compare them exactly).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

_N, _M = 624, 397
_MATRIX_A = np.uint32(0x9908B0DF)
_UPPER, _LOWER = np.uint32(0x80000000), np.uint32(0x7FFFFFFF)
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
MARGIN = 1.01
"""Words drawn per chunk relative to the expected need; a short chunk is followed
by another from the same state."""


@numba.njit(**_JIT)
def _twist(mt):
    """One MT19937 state update (624 words), in place."""
    for k in range(_N - _M):
        y = (mt[k] & _UPPER) | (mt[k + 1] & _LOWER)
        mt[k] = mt[k + _M] ^ (y >> np.uint32(1)) ^ ((y & np.uint32(1)) * _MATRIX_A)
    for k in range(_N - _M, _N - 1):
        y = (mt[k] & _UPPER) | (mt[k + 1] & _LOWER)
        mt[k] = mt[k + (_M - _N)] ^ (y >> np.uint32(1)) ^ ((y & np.uint32(1)) * _MATRIX_A)
    y = (mt[_N - 1] & _UPPER) | (mt[0] & _LOWER)
    mt[_N - 1] = mt[_M - 1] ^ (y >> np.uint32(1)) ^ ((y & np.uint32(1)) * _MATRIX_A)


@numba.njit(**_JIT)
def _words(mt, out):
    """Fill ``out`` (a multiple of 624 long) with tempered outputs, twisting first
    (the state is at position 624, i.e. exhausted, between calls)."""
    for start in range(0, out.size, _N):
        _twist(mt)
        for k in range(_N):
            y = mt[k]
            y ^= y >> np.uint32(11)
            y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
            y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
            y ^= y >> np.uint32(18)
            out[start + k] = y


@numba.njit(**_JIT)
def _candidates(words, x1, x2, r2):
    """Polar-method candidates (4 words each): two uniforms on (-1, 1) as
    NumPy's ``legacy_double`` makes them (53 bits from two words), and x1^2 + x2^2."""
    for c in range(words.size // 4):
        w = 4 * c
        a, b = words[w] >> np.uint32(5), words[w + 1] >> np.uint32(6)
        u1 = 2.0 * ((a * 67108864.0 + b) / 9007199254740992.0) - 1.0
        a, b = words[w + 2] >> np.uint32(5), words[w + 3] >> np.uint32(6)
        u2 = 2.0 * ((a * 67108864.0 + b) / 9007199254740992.0) - 1.0
        x1[c], x2[c] = u1, u2
        r2[c] = u1 * u1 + u2 * u2


@numba.njit(**_JIT)
def _pairs(x1, x2, r2, accepted, out, done):
    """Each accepted candidate gives ``f x2`` then ``f x1``, f = sqrt(-2 ln(r2) / r2)."""
    pairs = min(accepted.size, (out.size - done) // 2)
    for k in range(pairs):
        c = accepted[k]
        f = np.sqrt(-2.0 * np.log(r2[c]) / r2[c])
        out[done + 2 * k] = f * x2[c]
        out[done + 2 * k + 1] = f * x1[c]
    done += 2 * pairs
    if done == out.size - 1 and pairs < accepted.size:  # odd size: the first of a pair
        c = accepted[pairs]
        out[done] = np.sqrt(-2.0 * np.log(r2[c]) / r2[c]) * x2[c]
        done += 1
    return done


def standard_normal(seed: int, size: int) -> np.ndarray:
    """``np.random.RandomState(seed).standard_normal(size)``, bit for bit."""
    state: tuple[Any, ...] = np.random.RandomState(seed).get_state(legacy=True)  # type: ignore[assignment]
    mt = np.array(state[1], dtype=np.uint32)
    if state[2] != _N or state[3]:  # a fresh RandomState always is at 624, no cache
        raise RuntimeError("unexpected RandomState layout; use NumPy's generator")
    out = np.empty(size, dtype=np.float64)
    done = 0
    while done < size:
        # 4 words per candidate, pi/4 of the candidates accepted, 2 values each;
        # chunks of whole twists (624 words, a multiple of 4)
        need = (size - done) * 2.0 / np.pi * MARGIN + 64
        words = np.empty(-(-int(need) // _N) * _N, dtype=np.uint32)
        _words(mt, words)
        x1, x2, r2 = (np.empty(words.size // 4) for _ in range(3))
        _candidates(words, x1, x2, r2)
        accepted = np.flatnonzero((r2 < 1.0) & (r2 != 0.0))
        done = _pairs(x1, x2, r2, accepted, out, done)
    return out
