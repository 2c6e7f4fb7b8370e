"""The systematics engine: the six nuisance parameters applied to an event sample.

Columnar NumPy re-implementation of the challenge's systematics (the reference is
``HiggsML.systematics.systematics``).  Order of operations, as in the reference:

1. ``tes`` scales ``PRI_had_pt``; the change of the hadronic tau's transverse
   momentum is absorbed in the MET (MET vector minus the added tau px/py).
2. ``jes`` scales the leading jet (where ``PRI_n_jets > 0``), the subleading jet
   (where ``PRI_n_jets > 1``) and ``PRI_jet_all_pt`` (massless jets); the MET absorbs
   the change of the two jets.
3. ``soft_met > 0`` adds ``N(0, soft_met)`` to MET px and py event by event, drawn
   from ``np.random.RandomState(seed)`` (all px first, then all py) over *all* input
   events, before any event is dropped -- the reference's exact stream.
4. All primaries except ``PRI_n_jets`` are rounded to 3 decimals.
5. Thresholds (``thresholds=True``): drop events with ``PRI_had_pt < 26``; remove
   the subleading, then the leading jet when its pT is in ``[0, 26]`` (its pT, eta,
   phi become -25, ``PRI_n_jets`` drops by one, its pT leaves ``PRI_jet_all_pt``);
   drop events with ``PRI_lep_pt < 20``.  As in the reference, ``PRI_n_jets``
   counts every jet while only two are stored, so an event with 3+ jets whose
   subleading jet is removed keeps ``PRI_n_jets >= 2`` with a -25 subleading jet,
   and its two-jet DER_ features are computed from the -25 placeholders (~0.5%
   of events at nominal).  Kept for parity: the challenge data were made this way.
6. The 12 DER_ features are recomputed from the (float32) primaries.
7. Weights: ttbar x ``ttbar_scale``, diboson x ``diboson_scale``, every background
   x ``bkg_scale``.  The reference package's ``systematics()`` skips this step
   because it tests for a ``detailedlabel`` column that never exists (the column
   is ``detailed_labels``); we follow the challenge paper and apply the scales.

Arithmetic is float64 throughout (the reference works in float32), results are
stored as float32.  The tau mass (0.8 GeV) and jet masses do not enter: only the
transverse components of the momentum change reach the MET.
"""

from __future__ import annotations

from collections.abc import Mapping

import awkward as ak
import numpy as np

from .derived import compute_derived
from .events import PROCESS, WEIGHTS, Events, SchemaError
from .nuisance import NuisanceParameters
from .schema import FEATURES, PRIMARY, PROCESSES, UNDEFINED

DECIMALS = 3
HAD_PT_MIN = 26.0
"""Events with ``PRI_had_pt`` below this are dropped after the shifts."""
JET_PT_MIN = 26.0
"""Jets with pT in ``[0, JET_PT_MIN]`` (inclusive) are removed after the shifts."""
LEP_PT_MIN = 20.0
"""Events with ``PRI_lep_pt`` below this are dropped after the shifts."""

_ROUNDED = tuple(name for name in PRIMARY if name != "PRI_n_jets")
_WEIGHT_NPS = ("ttbar_scale", "diboson_scale", "bkg_scale")


def _as_nps(nps) -> NuisanceParameters:
    if isinstance(nps, NuisanceParameters):
        return nps
    if isinstance(nps, Mapping):
        return NuisanceParameters.from_dict(dict(nps))
    raise TypeError(
        f"nps must be a NuisanceParameters or a mapping of NP values, got {type(nps).__name__}"
    )


# -- weights -------------------------------------------------------------------
def weight_scale_factors(nps: NuisanceParameters) -> np.ndarray:
    """Per-process weight factors, indexed by process code (see ``schema.PROCESSES``).

    Signal 1, ztautau ``bkg_scale``, ttbar ``ttbar_scale * bkg_scale``, diboson
    ``diboson_scale * bkg_scale``.
    """
    nps = _as_nps(nps)
    factors = {
        "htautau": 1.0,
        "ztautau": nps.bkg_scale,
        "ttbar": nps.ttbar_scale * nps.bkg_scale,
        "diboson": nps.diboson_scale * nps.bkg_scale,
    }
    return np.array([factors[p] for p in PROCESSES], dtype=np.float64)


def has_weight_scales(nps: NuisanceParameters) -> bool:
    """True when any of ttbar/diboson/bkg scale differs from its nominal 1."""
    return any(getattr(nps, name) != 1.0 for name in _WEIGHT_NPS)


def nominal_weight_scales(nps: NuisanceParameters) -> NuisanceParameters:
    """The same NPs with the three weight scales set to nominal (shape NPs kept)."""
    return _as_nps(nps).replace(**{name: 1.0 for name in _WEIGHT_NPS})


def _check_labelled(nps: NuisanceParameters, labelled: bool) -> None:
    if labelled or not has_weight_scales(nps):
        return
    active = {n: getattr(nps, n) for n in _WEIGHT_NPS if getattr(nps, n) != 1.0}
    raise SchemaError(
        f"weight scales {active} need the per-event process, but the sample has no "
        f"'{PROCESS}' column (unlabelled); apply them to a labelled sample or keep "
        "ttbar_scale/diboson_scale/bkg_scale at 1"
    )


def _scaled_weights(weights, process, nps: NuisanceParameters) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    if not has_weight_scales(nps):
        return weights.copy()
    _check_labelled(nps, process is not None)
    return weights * weight_scale_factors(nps)[np.asarray(process, dtype=np.intp)]


def apply_weight_scales(events: Events, nps: NuisanceParameters) -> Events:
    """Only the weight part of the systematics (features untouched), e.g. for templates."""
    nps = _as_nps(nps)
    process = events[PROCESS] if events.is_labelled else None
    return events.with_columns(**{WEIGHTS: _scaled_weights(events.weights, process, nps)})


# -- features ------------------------------------------------------------------
_PHI_STEPS = 3142  # angles in the dataset are 3-decimal numbers in [-3.142, 3.142]
_PHI_GRID = np.arange(-_PHI_STEPS, _PHI_STEPS + 1, dtype=np.float64) / 1000.0
_PHI_KEYS = _PHI_GRID.astype(np.float32).astype(np.float64)
_COS_TABLE, _SIN_TABLE = np.cos(_PHI_KEYS), np.sin(_PHI_KEYS)


def _cos_sin(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of float32-stored angles, bit-identical to ``np.cos``/``np.sin``.

    float64 trigonometry is slow (~12 ns/value, no SIMD); the stored angles are
    float32 images of 3-decimal numbers, so a table over those 6285 values answers
    almost all of them.  Angles not on the grid are computed directly.
    """
    k = np.rint(phi * 1000.0)
    np.clip(k, -_PHI_STEPS, _PHI_STEPS, out=k)
    idx = k.astype(np.intp)
    idx += _PHI_STEPS
    cos, sin = _COS_TABLE[idx], _SIN_TABLE[idx]
    off = np.flatnonzero(_PHI_KEYS[idx] != phi)
    if off.size:
        cos[off], sin[off] = np.cos(phi[off]), np.sin(phi[off])
    return cos, sin


def _shift_primaries(pri: dict[str, np.ndarray], nps: NuisanceParameters, seed: int) -> None:
    """tes, jes, soft_met on float64 primaries, in place; MET recomputed from its vector."""
    met = pri["PRI_met"]
    cos, sin = _cos_sin(pri["PRI_met_phi"])
    met_x, met_y = met * cos, met * sin

    if nps.tes != 1.0:
        old = pri["PRI_had_pt"]
        new = old * nps.tes
        delta = new - old
        cos, sin = _cos_sin(pri["PRI_had_phi"])
        met_x -= delta * cos
        met_y -= delta * sin
        pri["PRI_had_pt"] = new

    if nps.jes != 1.0:
        n_jets = pri["PRI_n_jets"]
        for slot, min_jets in (("leading", 1), ("subleading", 2)):
            rows = np.flatnonzero(n_jets >= min_jets)  # only where the jet exists
            pt = pri[f"PRI_jet_{slot}_pt"]
            old = pt[rows]
            new = old * nps.jes
            delta = new - old
            cos, sin = _cos_sin(pri[f"PRI_jet_{slot}_phi"][rows])
            met_x[rows] -= delta * cos
            met_y[rows] -= delta * sin
            pt[rows] = new
        pri["PRI_jet_all_pt"] *= nps.jes

    if nps.soft_met > 0:
        rs = np.random.RandomState(seed)
        size = len(met)
        met_x += rs.normal(0.0, nps.soft_met, size=size)
        met_y += rs.normal(0.0, nps.soft_met, size=size)

    pri["PRI_met"] = np.hypot(met_x, met_y)
    pri["PRI_met_phi"] = np.arctan2(met_y, met_x)


def _round_primaries(pri: dict[str, np.ndarray]) -> None:
    for name in _ROUNDED:
        np.round(pri[name], DECIMALS, out=pri[name])


def _apply_thresholds(pri: dict[str, np.ndarray]) -> np.ndarray:
    """Jet removal in place; returns the mask of surviving events.

    Subleading first, then leading, as the reference.  Unlike the reference, when
    the leading jet is removed but the subleading survives (possible only for
    inputs with leading pT < subleading pT, never in the public dataset since
    ``jes`` preserves the order) the subleading jet is promoted into the leading
    slot, so that ``PRI_n_jets == 1`` always means "leading jet defined".  The
    reference leaves leading = -25 with the subleading kinematics in place.
    """
    n_jets = pri["PRI_n_jets"]
    all_pt = pri["PRI_jet_all_pt"]
    removed = {}
    for slot in ("subleading", "leading"):
        pt = pri[f"PRI_jet_{slot}_pt"]
        gone = (pt >= 0.0) & (pt <= JET_PT_MIN)
        removed[slot] = gone
        if gone.any():
            all_pt -= np.where(gone, pt, 0.0)
            n_jets -= gone
            for var in ("pt", "eta", "phi"):
                pri[f"PRI_jet_{slot}_{var}"][gone] = UNDEFINED

    promote = removed["leading"] & (pri["PRI_jet_subleading_pt"] >= 0.0)
    if promote.any():
        for var in ("pt", "eta", "phi"):
            lead, sub = pri[f"PRI_jet_leading_{var}"], pri[f"PRI_jet_subleading_{var}"]
            lead[promote] = sub[promote]
            sub[promote] = UNDEFINED

    return (pri["PRI_had_pt"] >= HAD_PT_MIN) & (pri["PRI_lep_pt"] >= LEP_PT_MIN)


def systematics_columns(
    primaries: Mapping[str, np.ndarray],
    nps: NuisanceParameters,
    seed: int = 31415,
    *,
    thresholds: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Core of :func:`apply_systematics` on plain columns (features only, no weights).

    Returns the 28 float32 feature columns of the surviving events and the boolean
    mask of survivors over the input rows (``None`` when nothing was dropped).
    """
    nps = _as_nps(nps)
    missing = [name for name in PRIMARY if name not in primaries]
    if missing:
        raise SchemaError(f"missing primary column(s): {', '.join(missing)}")
    # float64 working copies (astype always copies, so the input is never modified)
    pri = {name: np.asarray(primaries[name]).astype(np.float64) for name in PRIMARY}

    _shift_primaries(pri, nps, seed)
    _round_primaries(pri)
    keep = _apply_thresholds(pri) if thresholds else None
    if keep is not None and keep.all():
        keep = None

    if keep is not None:
        pri = {name: col[keep] for name, col in pri.items()}
    # DER from the rounded float64 primaries, i.e. from the 3-decimal values themselves
    # (the reference evaluates the same formulas in float32, which loses up to ~1e-2 GeV
    # in nearly-cancelling masses such as a small transverse mass).
    out = compute_derived(pri)
    out.update({name: pri[name].astype(np.float32) for name in PRIMARY})
    return {name: out[name] for name in FEATURES}, keep


def apply_systematics(
    events: Events,
    nps: NuisanceParameters,
    seed: int = 31415,
    *,
    thresholds: bool = True,
) -> Events:
    """Apply the six nuisance parameters to ``events`` (see the module docstring).

    ``seed`` seeds the soft-MET smearing (``np.random.RandomState(seed)``, the
    reference's stream); it is unused when ``soft_met == 0``.  With
    ``thresholds=False`` the shifts and the rounding are applied but no event or
    jet is removed.  Non-feature columns (weights, labels, process) follow the
    surviving events; weights get the ttbar/diboson/bkg scales, which need the
    ``process`` column whenever they are not 1.

    Difference from ``HiggsML.systematics.systematics`` 0.1.5: the reference
    ignores ``ttbar_scale``/``diboson_scale``/``bkg_scale`` (it looks for a
    ``detailedlabel`` column instead of ``detailed_labels``); this function
    applies them, as the challenge paper describes.
    """
    nps = _as_nps(nps)
    _check_labelled(nps, events.is_labelled)  # fail before the feature work
    process = events[PROCESS] if events.is_labelled else None

    features, keep = systematics_columns(
        {name: events[name] for name in PRIMARY}, nps, seed, thresholds=thresholds
    )
    out: dict[str, np.ndarray] = dict(features)
    for name in events.fields:
        if name in out or name in FEATURES:
            continue
        col = events[name]
        if name == WEIGHTS:
            col = _scaled_weights(col, process, nps)
        out[name] = col if keep is None else col[keep]
    return Events(ak.Array(out))
