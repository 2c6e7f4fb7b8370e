"""The ISR emissions of the candidates reaching the tau stage, emission-major.

Candidate c recoils against K_c emissions: the hardest is its pT_max (drawn
in stage A), the K_c - 1 others Pareto truncated at it (or, for VBF Higgs,
the two tag jets).  Looping candidate by candidate over a varying K costs a
mispredicted loop exit per candidate in every pass (offsets, Pareto bases,
recoil sums: ~30 ns a candidate); here the emissions of all candidates sit in
flat arrays with an ``owner`` index, and every pass is one branch-free loop
over the emissions (the Pareto power is vectorised NumPy in between).
"""

from __future__ import annotations

import numba
import numpy as np

from workbench_builtins.generators.simulator import calibration as cal
from workbench_builtins.generators.simulator.resonance_kernel import (
    E_OFF,
    PT_MAX,
    SPAN,
    TAG0,
    TAG1,
    VBF,
    K,
)


def layout(s, m: int):
    """(owner, starts) of the first m candidates' emissions: ``owner[e]`` is the
    candidate of emission e, candidate c owns [starts[c], starts[c] + K_c).
    Also writes the starts to the state table (row E_OFF) for the jets."""
    k = s[K, :m].astype(np.int64)
    ends = np.cumsum(k)
    total = int(ends[-1]) if m else 0
    # owner of e = number of candidates whose emissions end at or before e
    owner = np.cumsum(np.bincount(ends, minlength=total + 1)[:total])
    starts = ends - k
    s[E_OFF, :m] = starts
    return owner, starts


@numba.njit(cache=True, error_model="numpy")
def _pareto_bases(u, owner, span):
    """1 - u span (float32) per emission, span = 1 - (pt0/pT_max)^alpha of its candidate."""
    base = np.empty(u.size, dtype=np.float32)
    for e in range(u.size):
        base[e] = np.float32(1.0) - u[e] * np.float32(span[owner[e]])
    return base


def pareto_pt(s, owner, u, isr: cal.ISR) -> np.ndarray:
    """pT (float64) of the softer emissions, pt0 base^(-1/alpha), by float32
    SIMD log/exp (~1 ns a value, a float64 power ~3 ns; 1e-7 is far below any
    resolution).  The hardest emissions' entries are replaced in :func:`recoil`."""
    pt = _pareto_bases(u, owner, s[SPAN])
    np.log(pt, out=pt)
    pt *= np.float32(-1.0 / isr.alpha)
    np.exp(pt, out=pt)
    pt *= np.float32(isr.pt0)
    return pt.astype(np.float64)


@numba.njit(cache=True, error_model="numpy")
def recoil(s, m, owner, starts, ept, ec, es):
    """Transverse momentum (2, m) of the emissions each candidate recoils
    against; ``ept`` gets the final pTs (the hardest emission pT_max, or the
    VBF tags)."""
    out = np.zeros((2, m))
    cap, vbf, tag0, tag1 = s[PT_MAX], s[VBF], s[TAG0], s[TAG1]
    for e in range(owner.size):
        c = owner[e]
        first = e == starts[c]
        pt = cap[c] if first else ept[e]
        tag = tag0[c] if first else tag1[c]
        pt = tag if vbf[c] != 0.0 else pt
        ept[e] = pt
        out[0, c] -= pt * ec[e]
        out[1, c] -= pt * es[e]
    return out
