"""The ISR emissions of the candidates reaching the tau stage, emission-major.

Candidate c recoils against K_c emissions: the hardest is its pT_max (drawn
in stage A), the K_c - 1 others from the ISR spectrum truncated at it (or, for VBF Higgs,
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
from workbench_builtins.generators.simulator import kinematics as kin
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
    """pT (float64) of the softer emissions: survival 1 - u span (uniform above
    the hardest one's), inverted by kinematics.emission_pt in float32 SIMD
    log/exp (~1 ns a value, a float64 power ~3 ns; 1e-7 is far below any
    resolution).  The hardest emissions' entries are replaced in :func:`recoil`."""
    return kin.emission_pt(_pareto_bases(u, owner, s[SPAN]), isr).astype(np.float64)


@numba.njit(cache=True, error_model="numpy")
def final_pts(s, owner, starts, ept):
    """The emissions' final pTs in ``ept``: the hardest of each candidate is its
    pT_max (stage A), the VBF tags their drawn pTs."""
    cap, vbf, tag0, tag1 = s[PT_MAX], s[VBF], s[TAG0], s[TAG1]
    for e in range(owner.size):
        c = owner[e]
        first = e == starts[c]
        pt = cap[c] if first else ept[e]
        tag = tag0[c] if first else tag1[c]
        ept[e] = tag if vbf[c] != 0.0 else pt


@numba.njit(cache=True, error_model="numpy")
def _rapidities(s, m, n_emissions, gauss, u_side, eta_sigma, vbf_eta):
    """Pseudorapidities of the emissions of the first m candidates (rows E_OFF,
    K), the others left 0; and those emissions' indices."""
    eta = np.zeros(n_emissions)
    total = 0
    for c in range(m):
        total += int(s[K, c])
    index = np.empty(total, dtype=np.int64)
    j = 0
    for c in range(m):
        o, k = int(s[E_OFF, c]), int(s[K, c])
        side = 1.0 if u_side[c] < 0.5 else -1.0
        vbf = s[VBF, c] != 0.0
        for e in range(o, o + k):
            g = np.float64(gauss[j])
            eta[e] = side * abs(vbf_eta + g) if vbf else g * eta_sigma
            side = -side
            index[j] = e
            j += 1
    return eta, index


def rapidities(rng, s, m, owner, ept, eta_sigma, vbf_eta):
    """Pseudorapidity of each emission of the first m candidates (the selected
    ones: drawn last, for them only): Gaussian (eta_sigma), or for the VBF tags
    |vbf_eta + g| in opposite hemispheres, each limited to the range where its
    energy is at most the beam's (kinematics.limit_rapidities, given its final
    pT ``ept``).  Entries of other emissions are 0."""
    from workbench_builtins.generators.simulator import draws

    k = int(s[K, :m].sum())
    eta, index = _rapidities(s, m, owner.size, draws.normals(rng, k), draws.uniforms(rng, 1, m)[0],
                             eta_sigma, vbf_eta)
    mine = eta[index]

    def folded(i):
        return s[VBF, owner[index[i]]] != 0.0

    eta[index] = kin.limit_rapidities(rng, mine, ept[index], lambda i: np.where(folded(i), vbf_eta, 0.0),
                                      lambda i: np.where(folded(i), 1.0, eta_sigma), folded)
    return eta


@numba.njit(cache=True, error_model="numpy")
def recoil(m, owner, ept, ec, es):
    """Transverse momentum (2, m) of the emissions each candidate recoils against."""
    out = np.zeros((2, m))
    for e in range(owner.size):
        c = owner[e]
        out[0, c] -= ept[e] * ec[e]
        out[1, c] -= ept[e] * es[e]
    return out
