"""The compiled event loop of the systematics engine (see ``workbench.systematics``).

:func:`shift_kernel` applies tes, jes and soft_met with the MET propagation,
the 3-decimal rounding and the thresholds (steps 1-5) in one pass per event,
writing the survivors' primaries compactly; the caller then computes the new
MET azimuth (``arctan2`` is SIMD in NumPy, ~20 ns a call in a scalar loop) and
the DER_ features (``workbench.data.derived``) on the written columns.

Everything is float64 (the reference computes in the dtype of its input;
float64 makes pT x tes/jes and the rounding match its float64 mode, and the MET
agree to ~1e-14).  Azimuths enter as unit vectors computed vectorised
beforehand (``derived.unit_vectors``).
"""

from __future__ import annotations

import numba
import numpy as np

from workbench.data.derived import (
    ALL_PT,
    HAD_ETA,
    HAD_PHI,
    HAD_PT,
    J1_ETA,
    J1_PHI,
    J1_PT,
    J2_ETA,
    J2_PHI,
    J2_PT,
    LEP_ETA,
    LEP_PHI,
    LEP_PT,
    MET,
    N_JETS,
    round3_fast,
)
from workbench.data.schema import UNDEFINED

HAD_PT_MIN = 26.0
"""Events with ``PRI_had_pt`` below this are dropped after the shifts."""
JET_PT_MIN = 26.0
"""Jets with pT in ``[0, JET_PT_MIN]`` (inclusive) are removed after the shifts."""
LEP_PT_MIN = 20.0
"""Events with ``PRI_lep_pt`` below this are dropped after the shifts."""

# rows of the trigonometry block: cos and sin of the input azimuths
HAD_COS, HAD_SIN, J1_COS, J1_SIN, J2_COS, J2_SIN, MET_COS, MET_SIN = range(8)
TRIG_ROWS = 9  # + a tan(phi/2) scratch row
MET_X, MET_Y = 0, 1
"""Rows of the MET block: the shifted MET vector of each survivor."""

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


@numba.njit(**_JIT)
def round3_fast_array(x):
    """:func:`round3_fast` over an array (for the tests)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = round3_fast(x[i])
    return out


@numba.njit(inline="always")
def _scale_jet(pt, jes, cos, sin, mx, my):
    """A jet's pT times jes; the MET vector absorbs the change along the jet."""
    new = pt * jes
    delta = new - pt
    return new, mx - delta * cos, my - delta * sin


@numba.njit(**_JIT)
def shift_kernel(cols, start, stop, trig, tes, jes, noise_x, noise_y, thresholds, keep,
                 out, offset, met):
    """Steps 1-5 on input rows ``[start, stop)``; returns the number of survivors.

    ``cols``: the 16 primaries (schema order, one dtype); ``trig``: float64
    cos/sin of the input azimuths of the block (rows above; the tau's are read
    only if ``tes != 1``, the jets' only if ``jes != 1``); ``noise_x``/
    ``noise_y``: the soft-term draws of every input row (empty: no soft term);
    ``keep``: bool per input row, written when ``thresholds``.  Survivor ``j``
    is written to ``out[k][offset + j]`` (the 16 float32 primary rows; the MET
    azimuth is left to the caller) and its MET vector to ``met[:, j]``.
    """
    soft = noise_x.size > 0
    j = 0
    for i in range(start, stop):
        r = i - start
        lep_pt = round3_fast(float(cols[LEP_PT][i]))
        had_old = float(cols[HAD_PT][i])
        had_new = had_old * tes
        had_pt = round3_fast(had_new)
        if thresholds:
            ok = (had_pt >= HAD_PT_MIN) & (lep_pt >= LEP_PT_MIN)
            keep[i] = ok
            if not ok:
                continue

        # 1-3: the MET absorbs the tau and jet pT changes, plus the soft term
        met_pt = float(cols[MET][i])
        mx, my = trig[MET_COS, r] * met_pt, trig[MET_SIN, r] * met_pt
        if soft:
            mx += noise_x[i]
            my += noise_y[i]
        if tes != 1.0:
            delta = had_new - had_old
            mx -= delta * trig[HAD_COS, r]
            my -= delta * trig[HAD_SIN, r]
        n_jets = float(cols[N_JETS][i])
        pt1, pt2 = float(cols[J1_PT][i]), float(cols[J2_PT][i])
        all_pt = float(cols[ALL_PT][i])
        if jes != 1.0:
            if n_jets >= 1.0:
                pt1, mx, my = _scale_jet(pt1, jes, trig[J1_COS, r], trig[J1_SIN, r], mx, my)
            if n_jets >= 2.0:
                pt2, mx, my = _scale_jet(pt2, jes, trig[J2_COS, r], trig[J2_SIN, r], mx, my)
            all_pt *= jes
        met[MET_X, j], met[MET_Y, j] = mx, my

        # 4: rounding
        pt1, pt2, all_pt = round3_fast(pt1), round3_fast(pt2), round3_fast(all_pt)
        eta1, eta2 = round3_fast(float(cols[J1_ETA][i])), round3_fast(float(cols[J2_ETA][i]))
        phi1, phi2 = round3_fast(float(cols[J1_PHI][i])), round3_fast(float(cols[J2_PHI][i]))

        # 5: jets with pT in [0, 26] removed, subleading first
        if thresholds:
            if (pt2 >= 0.0) & (pt2 <= JET_PT_MIN):
                all_pt -= pt2
                n_jets -= 1.0
                pt2 = eta2 = phi2 = UNDEFINED
            if (pt1 >= 0.0) & (pt1 <= JET_PT_MIN):
                all_pt -= pt1
                n_jets -= 1.0
                if pt2 >= 0.0:  # promote the subleading jet (see systematics docs)
                    pt1, eta1, phi1 = pt2, eta2, phi2
                    pt2 = eta2 = phi2 = UNDEFINED
                else:
                    pt1 = eta1 = phi1 = UNDEFINED

        o = offset + j
        out[LEP_PT][o] = lep_pt
        out[LEP_ETA][o] = round3_fast(float(cols[LEP_ETA][i]))
        out[LEP_PHI][o] = round3_fast(float(cols[LEP_PHI][i]))
        out[HAD_PT][o] = had_pt
        out[HAD_ETA][o] = round3_fast(float(cols[HAD_ETA][i]))
        out[HAD_PHI][o] = round3_fast(float(cols[HAD_PHI][i]))
        out[J1_PT][o], out[J1_ETA][o], out[J1_PHI][o] = pt1, eta1, phi1
        out[J2_PT][o], out[J2_ETA][o], out[J2_PHI][o] = pt2, eta2, phi2
        out[N_JETS][o], out[ALL_PT][o] = n_jets, all_pt
        out[MET][o] = round3_fast(np.sqrt(mx * mx + my * my))
        j += 1
    return j
