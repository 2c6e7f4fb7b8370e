"""The 12 derived (``DER_``) features, recomputed from the primaries.

Definitions follow the public dataset (as documented by the challenge and its
reference package, ``HiggsML.derived_quantities``); results are float32 like the
dataset and undefined values (fewer than two jets) are -25.

How it is fast and accurate.  Blocks of :data:`BLOCK` events go through a few
short compiled (numba) loops, each simple enough for the compiler to vectorise
(no branches, no calls, at most ~5 arrays written), with float64 arithmetic;
the transcendental functions run between them as NumPy's SIMD loops (float64
``tan``/``exp`` cost ~1 ns a value there, libm's scalar ``sin`` + ``cos`` ~18 ns).
Each azimuth enters as the unit vector ``(cos, sin)`` computed from its
half-angle tangent ``t = tan(phi/2)``: ``cos = (1-t^2)/(1+t^2)``,
``sin = 2t/(1+t^2)`` (~2e-16), so that:

* ``DER_pt_h`` and ``DER_pt_tot`` (vector sums that can cancel) use the unit
  vectors as components; sines of angle differences are ``s1 c2 - c1 s2`` and
  ``4 sin^2(dphi/2)`` is the squared chord ``|u1 - u2|^2``;
* the masses of two massless objects use the cancellation-free form
  ``m^2 = pT1 pT2 (4 sinh^2(deta/2) + |u1 - u2|^2)`` (the quantity the reference
  computes as ``(E1+E2)^2 - |p1+p2|^2``, which loses digits for small masses),
  with ``4 sinh^2(x) = (e^x - e^-x)^2``.

Rows where the reference's own rounding decides the value (degenerate angles
in ``DER_met_phi_centrality``, two-jet events carrying a -25 placeholder jet)
are flagged and redone with the reference's float64 formula.

Column blocks are padded (:func:`padded_rows`): a loop over element ``i`` of
many rows that are a multiple of 4 KiB apart thrashes the L1 cache sets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numba
import numpy as np

from workbench.data.schema import DERIVED, PRIMARY, UNDEFINED

BLOCK = 1 << 14
"""Events per block (the ~25 float64 scratch rows, 128 KiB each, stay in L2/L3
and the per-block dispatch of ~15 compiled loops is amortised)."""

_EPSILON = 1e-4  # the reference's nudge for degenerate centralities
_TWO_PI = 2.0 * math.pi
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}

# primaries, in schema.PRIMARY order
(LEP_PT, LEP_ETA, LEP_PHI, HAD_PT, HAD_ETA, HAD_PHI, J1_PT, J1_ETA, J1_PHI, J2_PT,
 J2_ETA, J2_PHI, N_JETS, ALL_PT, MET, MET_PHI) = range(16)
AZIMUTHS = (LEP_PHI, HAD_PHI, J1_PHI, J2_PHI, MET_PHI)
"""The five azimuths; object ``k`` has its cos and sin in scratch rows ``k``, ``5 + k``."""
# further scratch rows
_TAN, _CHORD_VIS, _CHORD_JJ, _U_VIS, _U_JJ, _ARG, _FLAG = range(10, 17)
_SCRATCH_ROWS = 17
# ``DER_`` rows, in schema.DERIVED order
(_MT, _MVIS, _PTH, _DETA_JJ, _MJJ, _PRODETA, _DR, _PTTOT, _SUMPT, _RATIO, _METCEN,
 _LEPCEN) = range(12)


def padded_rows(rows: int, size: int, dtype=np.float64) -> np.ndarray:
    """An uninitialised ``(rows, size)`` array whose rows are 64 bytes off a 4 KiB
    multiple apart.

    A loop that touches element ``i`` of many rows otherwise hits one cache set
    (4K aliasing) when the row length in bytes is a multiple of 4096: the L1
    sets thrash and a dozen stores per event take ~30 ns instead of ~3 ns.
    """
    itemsize = np.dtype(dtype).itemsize
    stride = -(-size * itemsize // 4096) * 4096 + 64
    return np.empty((rows, stride // itemsize), dtype=dtype)[:, :size]


def primary_columns(pri: Mapping[str, np.ndarray], error=KeyError) -> tuple[np.ndarray, ...]:
    """The 16 primaries as contiguous arrays of one dtype (float32 or float64), so
    that each compiled loop is specialised at most twice.  ``error``: the
    exception class for a missing column or unequal lengths."""
    missing = [name for name in PRIMARY if name not in pri]
    if missing:
        raise error(f"missing primary column(s): {', '.join(missing)}")
    cols = [np.asarray(pri[name]) for name in PRIMARY]
    n = len(cols[N_JETS])
    bad = {name: len(col) for name, col in zip(PRIMARY, cols) if len(col) != n}
    if bad:
        raise error(f"primary columns differ in length from PRI_n_jets ({n}): {bad}")
    dtype = np.float32 if {c.dtype for c in cols} == {np.dtype(np.float32)} else np.float64
    return tuple(np.ascontiguousarray(col, dtype=dtype) for col in cols)


def unit_vectors(phi: np.ndarray, cos: np.ndarray, sin: np.ndarray, tan: np.ndarray,
                 snap: bool = False) -> None:
    """float64 ``cos(phi)``, ``sin(phi)`` (~4e-16) into ``cos``/``sin``; ``tan``: scratch.
    ``snap``: of ``phi`` rounded to 3 decimals in float64 (see :func:`value`)."""
    m = len(phi)
    if snap:
        _half_snapped(phi, tan, m)
    else:
        np.multiply(phi, 0.5, out=tan[:m])
    np.tan(tan[:m], out=tan[:m])
    _units_from_tan(tan, cos, sin, m)


@numba.njit(inline="always")
def round3_fast(x):
    """``rint(1000 x) * 0.001``: a multiplication instead of ``np.round``'s division
    (a scalar division costs ~4x more).  Within 1 ulp (float64) of ``np.round(x, 3)``,
    never once different after the cast to float32 (tests check every 3-decimal
    value with ``|x|`` < 4000), and equal at the integer thresholds (``k * 1000 *
    0.001`` rounds back to ``k``), so that cuts decide as with ``np.round``."""
    return np.rint(x * 1000.0) * 0.001


@numba.njit(inline="always")
def value(x, snap):
    """``x`` as float64; with ``snap``, its nearest 3-decimal value
    (:func:`round3_fast`).  A float32 that stores a 3-decimal number (``|x|`` < 16777)
    identifies it uniquely, so this recovers the float64 value the reference
    computes with."""
    return round3_fast(x) if snap else float(x)


@numba.njit(**_JIT)
def _half_snapped(phi, half, m):
    for i in range(m):
        half[i] = 0.5 * value(phi[i], True)


@numba.njit(**_JIT)
def _units_from_tan(t, cos, sin, m):
    """cos = q - 1, sin = t q with q = 2/(1+t^2) (vectorised)."""
    for i in range(m):
        q = 2.0 / (t[i] * t[i] + 1.0)
        cos[i] = q - 1.0
        sin[i] = t[i] * q


class DerivedBlocks:
    """Scratch for :meth:`compute`, reused from block to block."""

    def __init__(self, size: int):
        self.scratch = padded_rows(_SCRATCH_ROWS, max(int(size), 1))

    def compute(self, pri: tuple[np.ndarray, ...], out: np.ndarray, start: int, stop: int,
                snap: bool = False):
        """``DER_`` features of rows ``[start, stop)`` of the primaries ``pri`` (a
        :func:`primary_columns` tuple) into ``out[:, start:stop]`` (float32, 12 rows).

        ``snap``: the primaries are float32 stores of 3-decimal values (the
        systematics' output); compute from the float64 3-decimal values, as the
        reference does, instead of the float32 approximations (~6e-5 relative
        apart in the worst transverse masses and centralities, ~3e-7 snapped).
        """
        m = stop - start
        p = tuple(col[start:stop] for col in pri)
        o = tuple(row[start:stop] for row in out)
        s = tuple(row[:m] for row in self.scratch)
        for k, col in enumerate(AZIMUTHS):
            unit_vectors(p[col], s[k], s[5 + k], s[_TAN], snap)
        _vector_sums(p, s, o, snap)
        _angles_and_etas(p, s, o, snap)
        for row in (_U_VIS, _U_JJ, _ARG):  # SIMD exp
            np.exp(s[row], out=s[row])
        _masses(p, s, o, snap)
        _ratios(p, s, o, snap)
        flagged = np.flatnonzero(s[_FLAG])
        if flagged.size:
            _reference_rows(p, o, flagged, snap)


def compute_derived(pri: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return the 12 ``DER_`` columns (float32) for a mapping of the 16 ``PRI_`` columns.

    Other keys in ``pri`` are ignored.  Agrees with the reference's float64
    evaluation to ~1e-6 relative (a few 1e-7 typically).
    """
    cols = primary_columns(pri, KeyError)
    n = len(cols[0])
    out = padded_rows(len(DERIVED), n, np.float32)
    blocks = DerivedBlocks(min(BLOCK, n))
    for start in range(0, n, BLOCK):
        blocks.compute(cols, out, start, min(start + BLOCK, n))
    return dict(zip(DERIVED, out))


# -- the vectorised loops (p: primaries, s: scratch rows, o: ``DER_`` rows) ---------
# unit vectors: lep (s[0], s[5]), had (s[1], s[6]), jet1 (s[2], s[7]),
# jet2 (s[3], s[8]), met (s[4], s[9])
@numba.njit(**_JIT)
def _vector_sums(p, s, o, snap):
    """DER_pt_h, DER_pt_tot (same association as the reference) and the
    transverse mass sqrt(met pT_lep |u_met - u_lep|^2)."""
    for i in range(len(o[0])):
        lep, had, met = value(p[LEP_PT][i], snap), value(p[HAD_PT][i], snap), value(p[MET][i], snap)
        n_jets = value(p[N_JETS][i], snap)
        pt1 = value(p[J1_PT][i], snap) if n_jets >= 1.0 else 0.0
        pt2 = value(p[J2_PT][i], snap) if n_jets >= 2.0 else 0.0
        x = had * s[1][i] + lep * s[0][i] + met * s[4][i]
        y = had * s[6][i] + lep * s[5][i] + met * s[9][i]
        o[_PTH][i] = math.sqrt(x * x + y * y)
        x += pt1 * s[2][i]
        y += pt1 * s[7][i]
        x += pt2 * s[3][i]
        y += pt2 * s[8][i]
        o[_PTTOT][i] = math.sqrt(x * x + y * y)
        dc, ds = s[4][i] - s[0][i], s[9][i] - s[5][i]
        o[_MT][i] = math.sqrt(met * lep * (dc * dc + ds * ds))


@numba.njit(**_JIT)
def _angles_and_etas(p, s, o, snap):
    """Squared chords and exp arguments for the masses and the lepton centrality;
    DER_deltaeta_jet_jet and DER_prodeta_jet_jet."""
    for i in range(len(o[0])):
        lep_eta, had_eta = value(p[LEP_ETA][i], snap), value(p[HAD_ETA][i], snap)
        eta1, eta2 = value(p[J1_ETA][i], snap), value(p[J2_ETA][i], snap)
        has2 = value(p[N_JETS][i], snap) >= 2.0
        dc, ds = s[0][i] - s[1][i], s[5][i] - s[6][i]
        s[_CHORD_VIS][i] = dc * dc + ds * ds
        dc, ds = s[2][i] - s[3][i], s[7][i] - s[8][i]
        s[_CHORD_JJ][i] = dc * dc + ds * ds
        s[_U_VIS][i] = min(0.5 * abs(lep_eta - had_eta), 350.0)
        s[_U_JJ][i] = min(0.5 * abs(eta1 - eta2), 350.0)
        d2 = (eta1 - eta2) * (eta1 - eta2)
        d2 = d2 if d2 != 0.0 else _EPSILON
        c = 0.5 * ((lep_eta - eta1) + (lep_eta - eta2))
        s[_ARG][i] = max(-4.0 * c * c / d2, -745.0)
        o[_DETA_JJ][i] = abs(eta2 - eta1) if has2 else UNDEFINED
        o[_PRODETA][i] = eta1 * eta2 if has2 else UNDEFINED


@numba.njit(**_JIT)
def _masses(p, s, o, snap):
    """Visible and di-jet masses, pT1 pT2 ((u - 1/u)^2 + chord^2) with u =
    exp(|deta|/2) (~1e-12 relative for the smallest nonzero 3-decimal |deta|),
    and DER_lep_eta_centrality; undefined (-25) without two jets."""
    for i in range(len(o[0])):
        lep, had = value(p[LEP_PT][i], snap), value(p[HAD_PT][i], snap)
        pt1, pt2 = value(p[J1_PT][i], snap), value(p[J2_PT][i], snap)
        has2 = value(p[N_JETS][i], snap) >= 2.0
        u = s[_U_VIS][i]
        d = u - 1.0 / u
        o[_MVIS][i] = math.sqrt(lep * had * (d * d + s[_CHORD_VIS][i]))
        u = s[_U_JJ][i]
        d = u - 1.0 / u
        m2 = pt1 * pt2 * (d * d + s[_CHORD_JJ][i])
        o[_MJJ][i] = math.sqrt(max(m2, 0.0)) if has2 else UNDEFINED
        o[_LEPCEN][i] = s[_ARG][i] if has2 else UNDEFINED


@numba.njit(**_JIT)
def _ratios(p, s, o, snap):
    """DER_deltar_had_lep (|dphi| folded into [0, pi]), DER_sum_pt,
    DER_pt_ratio_lep_had, DER_met_phi_centrality; flags the rows the
    reference's formula must redo."""
    for i in range(len(o[0])):
        lep, had = value(p[LEP_PT][i], snap), value(p[HAD_PT][i], snap)
        dphi = abs(value(p[LEP_PHI][i], snap) - value(p[HAD_PHI][i], snap))
        deta = value(p[LEP_ETA][i], snap) - value(p[HAD_ETA][i], snap)
        wide = dphi > _TWO_PI  # angles outside [-pi, pi]: the general fold
        dphi = min(dphi, _TWO_PI - dphi)
        o[_DR][i] = math.sqrt(deta * deta + dphi * dphi)
        o[_SUMPT][i] = had + lep + value(p[ALL_PT][i], snap)
        o[_RATIO][i] = lep / had
        # (a + b) / sqrt(a^2 + b^2) sign(sin(had - lep)),
        # a = sin(met - lep), b = sin(had - met), from the unit vectors
        sign = s[6][i] * s[0][i] - s[1][i] * s[5][i]
        a = s[9][i] * s[0][i] - s[4][i] * s[5][i]
        b = s[6][i] * s[4][i] - s[1][i] * s[9][i]
        den = math.sqrt(a * a + b * b)
        o[_METCEN][i] = (a + b) / den * (1.0 if sign > 0.0 else -1.0)
        has2 = value(p[N_JETS][i], snap) >= 2.0
        placeholder = has2 & ((value(p[J1_PT][i], snap) < 0.0) | (value(p[J2_PT][i], snap) < 0.0))
        degenerate = (min(abs(sign), den) < 1e-10) | (den != den)
        s[_FLAG][i] = 1.0 if (wide | placeholder | degenerate) else 0.0


@numba.njit(**_JIT)
def _reference_rows(p, o, rows, snap):
    """The flagged rows, with the reference's float64 formulas (on the values it
    computes with: see :func:`value`)."""
    for i in rows:
        lep_phi, had_phi = value(p[LEP_PHI][i], snap), value(p[HAD_PHI][i], snap)
        dphi = abs(lep_phi - had_phi)
        if dphi > _TWO_PI:
            dphi = abs(np.mod(dphi + 3.0 * math.pi, _TWO_PI) - math.pi)
            dphi = min(dphi, _TWO_PI - dphi)
            deta = value(p[LEP_ETA][i], snap) - value(p[HAD_ETA][i], snap)
            o[_DR][i] = math.sqrt(deta * deta + dphi * dphi)
        pt1, pt2 = value(p[J1_PT][i], snap), value(p[J2_PT][i], snap)
        if p[N_JETS][i] >= 2.0 and (pt1 < 0.0 or pt2 < 0.0):
            o[_MJJ][i] = _jet_mass_reference(
                pt1, value(p[J1_ETA][i], snap), value(p[J1_PHI][i], snap),
                pt2, value(p[J2_ETA][i], snap), value(p[J2_PHI][i], snap))
        o[_METCEN][i] = _centrality_reference(value(p[MET_PHI][i], snap), lep_phi, had_phi)


@numba.njit(**_JIT)
def _jet_mass_reference(p1, e1, h1, p2, e2, h2):
    """The reference's ``(E1+E2)^2 - |p1+p2|^2`` in float64 (pT, eta, phi of each jet).

    Used where a two-jet event carries a -25 placeholder jet (``PRI_n_jets``
    counts every jet but only two are stored, so after the 26 GeV threshold an
    event may keep ``n_jets >= 2`` with a -25 jet): the value is then set by the
    rounding of ~1e23 terms, which only repeating its operations reproduces.
    """
    en = p1 * math.cosh(e1) + p2 * math.cosh(e2)
    px = p1 * math.cos(h1) + p2 * math.cos(h2)
    py = p1 * math.sin(h1) + p2 * math.sin(h2)
    pz = p1 * math.sinh(e1) + p2 * math.sinh(e2)
    m2 = en**2 - px**2 - py**2 - pz**2
    return math.sqrt(m2) if m2 >= 0.0 else 0.0


@numba.njit(**_JIT)
def _centrality_reference(met, lep, had):
    """The reference's float64 DER_met_phi_centrality, epsilon branch included."""
    for nudge in (0.0, _EPSILON):
        s = np.sign(math.sin(had - (lep + nudge)))
        a = math.sin(met - (lep + nudge)) * s
        b = math.sin(had - met) * s
        den = math.sqrt(a * a + b * b)
        if den != 0.0:
            return (a + b) / den
    return UNDEFINED
