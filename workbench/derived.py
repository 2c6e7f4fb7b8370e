"""The 12 derived (DER_) features, recomputed columnar from the primaries.

Definitions follow the public dataset (as documented by the challenge and its
reference package, ``HiggsML.derived_quantities``); results are float32 like the
dataset and undefined values (fewer than two jets) are -25.

Speed without losing accuracy.  NumPy's float64 ``sin``/``cos`` have no SIMD path
(~11 ns a value) while float32 functions and float64 ``tan`` do (~0.4 and
~1.4 ns), so the formulas are arranged to need neither float64 ``sin`` nor
``cos``:

* Azimuths enter through float64 unit vectors ``(cos, sin)`` from the half-angle
  tangent ``t = tan(phi/2)``: ``cos = (1-t^2)/(1+t^2)``, ``sin = 2t/(1+t^2)``
  (~2e-16).  ``DER_pt_h`` and ``DER_pt_tot`` (vector sums that can cancel) use
  them as components, sines of angle differences are ``s1 c2 - c1 s2``, and
  ``4 sin^2(dphi/2)`` is the squared chord ``|u1 - u2|^2``.
* The masses of two massless objects use the cancellation-free form
  ``m^2 = pT1 pT2 (4 sinh^2(deta/2) + |u1 - u2|^2)`` (the quantity the reference
  computes as ``(E1+E2)^2 - |p1+p2|^2``, which loses digits for small masses),
  with a float32 ``sinh``: every step is well conditioned, so ~1e-7 relative.

Work is done in blocks of :data:`BLOCK` events with reused scratch buffers
(:class:`Scratch`), so that temporaries stay in cache and no time goes to page
faults from freshly mapped memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np

from .schema import DERIVED, PRIMARY, UNDEFINED

BLOCK = 1 << 15
"""Events per block (256 KiB per float64 temporary)."""

_F32 = np.float32
_TWO_PI32 = np.float32(2.0 * np.pi)
_EPSILON = 1e-4  # the reference's nudge for degenerate centralities
_OBJECTS = ("lep", "had", "met", "jet_leading", "jet_subleading")
_PT = {obj: f"PRI_{obj}_pt" for obj in _OBJECTS}
_PT["met"] = "PRI_met"
_PHI = {obj: f"PRI_{obj}_phi" for obj in _OBJECTS}
_ETA = {obj: f"PRI_{obj}_eta" for obj in _OBJECTS if obj != "met"}


class Scratch:
    """Temporaries for block-wise work, reused from one block to the next.

    ``scratch(n, dtype)`` hands out a buffer that stays reserved until
    :meth:`reset` (called between blocks).  Fresh large NumPy arrays are
    page-faulted in each time malloc has returned memory to the system, which
    otherwise costs as much as the arithmetic.  ``Scratch(None)`` just allocates.
    """

    def __init__(self, size: int | None):
        self.size = size
        self._pool: dict[np.dtype, list[np.ndarray]] = {}
        self._used: dict[np.dtype, int] = {}

    def __call__(self, n: int, dtype=np.float64) -> np.ndarray:
        if self.size is None or n > self.size:
            return np.empty(n, dtype=dtype)
        dtype = np.dtype(dtype)
        pool = self._pool.setdefault(dtype, [])
        i = self._used.get(dtype, 0)
        if i == len(pool):
            pool.append(np.empty(self.size, dtype=dtype))
        self._used[dtype] = i + 1
        return pool[i][:n]

    def reset(self) -> None:
        self._used.clear()

    @contextmanager
    def frame(self):
        """Buffers handed out inside the ``with`` block are free again after it."""
        saved = dict(self._used)
        try:
            yield self
        finally:
            self._used = saved


def cos_sin(phi: np.ndarray, tmp: Scratch | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``(cos(phi), sin(phi))`` to ~4e-16 via the half-angle tangent.

    With ``t = tan(phi/2)`` and ``q = 2/(1+t^2)``: ``cos = q - 1``, ``sin = t q``.
    About 4x faster than ``np.cos`` + ``np.sin`` (float64 ``tan`` is vectorised,
    ``sin``/``cos`` are not).  Accurate for any finite angle whose half is not
    within ~1e-150 of a pole of ``tan`` (never the case for a float64 angle).
    """
    tmp = tmp or Scratch(None)
    n = len(phi)
    t = np.multiply(phi, 0.5, out=tmp(n), dtype=np.float64)
    np.tan(t, out=t)
    c = np.multiply(t, t, out=tmp(n))
    c += 1.0
    np.divide(2.0, c, out=c)
    t *= c
    c -= 1.0
    return c, t


def compute_derived(pri: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return the 12 DER_ columns (float32) for a mapping of the 16 PRI_ columns.

    Other keys in ``pri`` are ignored.  Agrees with the reference's float64
    evaluation to ~1e-6 relative (a few 1e-7 typically).
    """
    missing = [name for name in PRIMARY if name not in pri]
    if missing:
        raise KeyError(f"compute_derived: missing primary column(s): {', '.join(missing)}")
    cols = {name: np.asarray(pri[name]) for name in PRIMARY}
    n = len(cols["PRI_n_jets"])
    out = {name: np.empty(n, dtype=_F32) for name in DERIVED}
    tmp = Scratch(min(BLOCK, n))
    for start in range(0, n, BLOCK):
        sl = slice(start, min(start + BLOCK, n))
        m = sl.stop - sl.start
        tmp.reset()
        p32 = {}
        for name, col in cols.items():
            p32[name] = tmp(m, _F32)
            p32[name][...] = col[sl]
        pt64, eta64, phi64 = {}, {}, {}
        for obj in _OBJECTS:
            for dst, name in ((pt64, _PT), (eta64, _ETA), (phi64, _PHI)):
                if obj in name:
                    dst[obj] = tmp(m)
                    dst[obj][...] = cols[name[obj]][sl]
        trig = {obj: cos_sin(phi, tmp) for obj, phi in phi64.items()}
        derived_block(p32, pt64, eta64, phi64, trig, {k: v[sl] for k, v in out.items()}, tmp)
    return out


def derived_block(
    p32: Mapping[str, np.ndarray],
    pt64: Mapping[str, np.ndarray],
    eta64: Mapping[str, np.ndarray],
    phi64: Mapping[str, np.ndarray],
    trig: Mapping[str, tuple[np.ndarray, np.ndarray]],
    out: Mapping[str, np.ndarray],
    tmp: Scratch | None = None,
) -> None:
    """Write the DER_ features of one block into the float32 arrays ``out``.

    ``p32``: the primaries as float32; ``pt64``/``eta64``/``phi64``: float64
    pT, eta, phi of lep/had/met/jet_leading/jet_subleading, keyed by object
    (eta and phi differences are taken in float64, so float64 inputs keep their
    precision; phi64 is read on the rare rows where the reference's rounding
    decides); ``trig``: float64 ``(cos, sin)`` of the azimuths (see
    :func:`cos_sin`).  The systematics engine passes values it already has,
    :func:`compute_derived` computes them.
    """
    tmp = tmp or Scratch(None)
    n_jets = p32["PRI_n_jets"]
    m = len(n_jets)

    def f32():
        return tmp(m, _F32)

    has1 = np.greater_equal(n_jets, 1, out=tmp(m, bool))
    has2 = np.greater_equal(n_jets, 2, out=tmp(m, bool))
    # blend for "-25 unless two jets", the reference's x * (n >= 2) - 25 * (n <= 1)
    f2 = np.multiply(has2, _F32(1.0), out=f32())
    u2 = np.subtract(f2, _F32(1.0), out=f32())
    u2 *= _F32(-UNDEFINED)

    lep_pt, lep_eta = p32["PRI_lep_pt"], p32["PRI_lep_eta"]
    had_pt, had_eta = p32["PRI_had_pt"], p32["PRI_had_eta"]
    eta1, eta2 = p32["PRI_jet_leading_eta"], p32["PRI_jet_subleading_eta"]

    with tmp.frame():
        _vector_sums(pt64, trig, has1, has2, out, tmp)

    with tmp.frame():  # transverse mass: sqrt(met pT_lep |u_met - u_lep|^2)
        mt = _chord2(trig["met"], trig["lep"], tmp)
        mt *= p32["PRI_met"]
        mt *= lep_pt
        np.sqrt(mt, out=out["DER_mass_transverse_met_lep"])

    with tmp.frame():  # visible mass (the reference has no clamp: pT > 0 here)
        m2 = _massless_m2(lep_pt, eta64["lep"], had_pt, eta64["had"], trig["lep"],
                          trig["had"], tmp)
        np.sqrt(m2, out=out["DER_mass_vis"])

    with tmp.frame():  # two-jet features
        m2 = _massless_m2(p32["PRI_jet_leading_pt"], eta64["jet_leading"],
                          p32["PRI_jet_subleading_pt"], eta64["jet_subleading"],
                          trig["jet_leading"], trig["jet_subleading"], tmp)
        np.maximum(m2, _F32(0.0), out=m2)
        np.sqrt(m2, out=m2)
        m2 *= f2
        np.add(m2, u2, out=out["DER_mass_jet_jet"])
        _placeholder_jet_masses(p32, has2, out["DER_mass_jet_jet"])

        d = np.subtract(eta2, eta1, out=m2)
        np.abs(d, out=d)
        d *= f2
        np.add(d, u2, out=out["DER_deltaeta_jet_jet"])
        np.multiply(eta1, eta2, out=d)
        d *= f2
        np.add(d, u2, out=out["DER_prodeta_jet_jet"])

    with tmp.frame():  # delta R(lep, had), |dphi| folded into [0, pi] (~4e-7 absolute)
        deta = np.subtract(lep_eta, had_eta, out=f32())
        deta *= deta
        dphi = np.subtract(p32["PRI_lep_phi"], p32["PRI_had_phi"], out=f32())
        np.abs(dphi, out=dphi)
        if m and dphi.max() > _TWO_PI32:  # angles outside [-pi, pi]: the general fold
            dphi[...] = np.abs(np.mod(dphi + 3.0 * np.pi, 2.0 * np.pi) - np.pi)
        other = np.subtract(_TWO_PI32, dphi, out=f32())
        np.minimum(dphi, other, out=dphi)
        dphi *= dphi
        deta += dphi
        np.sqrt(deta, out=out["DER_deltar_had_lep"])

        s = np.add(had_pt, lep_pt, out=deta)
        np.add(s, p32["PRI_jet_all_pt"], out=out["DER_sum_pt"])
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(lep_pt, had_pt, out=out["DER_pt_ratio_lep_had"])

    with tmp.frame():
        _met_phi_centrality(trig, phi64, out["DER_met_phi_centrality"], tmp)
    with tmp.frame():
        _lep_eta_centrality(eta64, f2, u2, out["DER_lep_eta_centrality"], tmp)


def _vector_sums(pt64, trig, has1, has2, out, tmp) -> None:
    """DER_pt_h and DER_pt_tot from float64 components (these sums can cancel)."""
    m = len(has1)
    x, y, t = tmp(m), tmp(m), tmp(m)
    # same association as the reference: had + lep + met (+ jet1 + jet2)
    for i, obj in enumerate(("had", "lep", "met")):
        cos, sin = trig[obj]
        if i == 0:
            np.multiply(pt64[obj], cos, out=x)
            np.multiply(pt64[obj], sin, out=y)
        else:
            x += np.multiply(pt64[obj], cos, out=t)
            y += np.multiply(pt64[obj], sin, out=t)
    _norm(x, y, t, tmp, out["DER_pt_h"])
    pt = tmp(m)
    for obj, present in (("jet_leading", has1), ("jet_subleading", has2)):
        cos, sin = trig[obj]
        np.multiply(pt64[obj], present, out=pt)
        x += np.multiply(pt, cos, out=t)
        y += np.multiply(pt, sin, out=t)
    _norm(x, y, t, tmp, out["DER_pt_tot"])


def _norm(x, y, t, tmp, out) -> None:
    """sqrt(x^2 + y^2) into ``out`` (the reference's formula; ``np.hypot`` is 10x slower)."""
    np.multiply(x, x, out=t)
    t += np.multiply(y, y, out=tmp(len(y)))
    out[...] = t  # float32 sqrt: 3x faster, within 1 ulp of float32(sqrt(t))
    np.sqrt(out, out=out)


def _chord2(cs1, cs2, tmp) -> np.ndarray:
    """|u1 - u2|^2 = 4 sin^2(dphi/2) as float32, from float64 unit vectors.

    Well conditioned for small and for near-2pi differences alike (a float32
    difference of angles near +-pi would lose ~1e-7 absolute).  The differences
    are taken in float64, the squares in float32.
    """
    (c1, s1), (c2, s2) = cs1, cs2
    m = len(c1)
    d64 = np.subtract(c1, c2, out=tmp(m))
    dc = tmp(m, _F32)
    dc[...] = d64
    dc *= dc
    np.subtract(s1, s2, out=d64)
    ds = tmp(m, _F32)
    ds[...] = d64
    ds *= ds
    dc += ds
    return dc


def _massless_m2(pt1, eta1, pt2, eta2, cs1, cs2, tmp) -> np.ndarray:
    """Invariant mass squared of two massless objects, pT1 pT2 (4 sinh^2(deta/2) + chord^2).

    ``eta1``/``eta2`` float64 (their difference is taken before the cast), the
    rest float32.
    """
    m = len(pt1)
    d64 = np.subtract(eta1, eta2, out=tmp(m))
    d64 *= 0.5
    a = tmp(m, _F32)
    a[...] = d64
    np.sinh(a, out=a)
    a *= a
    a *= _F32(4.0)
    a += _chord2(cs1, cs2, tmp)
    a *= pt1
    a *= pt2
    return a


def _placeholder_jet_masses(p32, has2, out) -> None:
    """Reference formula where a two-jet event carries a -25 placeholder jet.

    ``PRI_n_jets`` counts every jet but only two are stored, so after the 26 GeV
    jet threshold an event may keep ``n_jets >= 2`` with a -25 jet.  The
    reference's ``(E1+E2)^2 - |p1+p2|^2`` is then dominated by rounding of
    ~1e23 terms; repeating its float64 operations reproduces its value.
    """
    low = np.minimum(p32["PRI_jet_leading_pt"], p32["PRI_jet_subleading_pt"])
    low = low < 0
    low &= has2
    if not low.any():  # any() is cheap, flatnonzero of an all-False mask is not
        return
    rows = np.flatnonzero(low)
    comps = []
    for slot in ("leading", "subleading"):
        pt = p32[f"PRI_jet_{slot}_pt"][rows].astype(np.float64)
        eta = p32[f"PRI_jet_{slot}_eta"][rows].astype(np.float64)
        phi = p32[f"PRI_jet_{slot}_phi"][rows].astype(np.float64)
        comps.append((pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)))
    (e1, x1, y1, z1), (e2, x2, y2, z2) = comps
    m2 = (e1 + e2) ** 2 - (x1 + x2) ** 2 - (y1 + y2) ** 2 - (z1 + z2) ** 2
    out[rows] = np.sqrt(m2 * (m2 >= 0))


def _met_phi_centrality(trig, phi64, out, tmp) -> None:
    """(A + B) / sqrt(A^2 + B^2), A = sin(met - lep) s, B = sin(had - met) s,
    s = sign(sin(had - lep)); the lepton phi is nudged by 1e-4 where degenerate.

    The sines of the differences come from the float64 unit vectors
    (sin(a - b) = s_a c_b - c_a s_b, ~1e-16 absolute).  Rows where s or the
    denominator is ~0 (equal or opposite angles) are redone with the reference's
    own float64 operations: its rounding decides signs and degeneracy there.
    """
    m = len(out)

    def sin_diff(obj1, obj2):  # sin(phi1 - phi2)
        (c1, s1), (c2, s2) = trig[obj1], trig[obj2]
        d = np.multiply(s1, c2, out=tmp(m))
        d -= np.multiply(c1, s2, out=tmp(m))
        return d

    sign = sin_diff("had", "lep")
    a = sin_diff("met", "lep")
    b = sin_diff("had", "met")
    # the rest in float32: well conditioned, (a + b) loses < 1e-7 absolute
    sign, a, b = (_to_f32(x, tmp) for x in (sign, a, b))
    den = np.multiply(a, a, out=tmp(m, _F32))
    a += b
    b *= b
    den += b
    np.sqrt(den, out=den)
    with np.errstate(divide="ignore", invalid="ignore"):
        a /= den
    np.abs(sign, out=b)
    np.minimum(b, den, out=b)
    edge = b < 1e-10
    np.sign(sign, out=sign)
    np.multiply(a, sign, out=out)
    if edge.any():
        edge = np.flatnonzero(edge)
        out[edge] = _met_phi_centrality_reference(
            phi64["met"][edge], phi64["lep"][edge], phi64["had"][edge]
        )


def _to_f32(x, tmp) -> np.ndarray:
    y = tmp(len(x), _F32)
    y[...] = x
    return y


def _met_phi_centrality_reference(met, lep, had):
    """The reference's float64 formula, epsilon branch included."""

    def ratio(lep):
        s = np.sign(np.sin(had - lep))
        a, b = np.sin(met - lep) * s, np.sin(had - met) * s
        den = np.sqrt(a * a + b * b)
        return (a + b) / (den + (den == 0)) * (den != 0) - 25.0 * (den == 0), den

    val, den = ratio(lep)
    degenerate = den == 0
    if degenerate.any():
        val = np.where(degenerate, ratio(lep + _EPSILON)[0], val)
    return val


def _lep_eta_centrality(eta64, f2, u2, out, tmp) -> None:
    """exp(-4 (eta_lep - mean)^2 / deta^2) for two-jet events, else -25.

    The differences in float64 (lep - mean can be a small difference of large
    numbers), the rest in float32.
    """
    m = len(out)
    lep, eta1, eta2 = eta64["lep"], eta64["jet_leading"], eta64["jet_subleading"]
    d64 = np.subtract(eta1, eta2, out=tmp(m))
    d2 = tmp(m, _F32)
    d2[...] = d64
    d2 *= d2
    zero = d2 == 0
    if zero.any():
        d2[zero] = _EPSILON
    np.subtract(lep, eta1, out=d64)
    d64 += np.subtract(lep, eta2, out=tmp(m))
    c = tmp(m, _F32)
    c[...] = d64
    c *= _F32(0.5)
    c *= c
    np.divide(_F32(-4.0), d2, out=d2)
    c *= d2
    np.exp(c, out=c)  # float32 exp has no slow underflow path (float64 exp has)
    c *= f2
    np.add(c, u2, out=out)
