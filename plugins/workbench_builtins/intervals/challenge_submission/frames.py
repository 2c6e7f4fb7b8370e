"""What a challenge submission is handed, in pandas: the training set, the
pseudo-experiments and the ``systematics`` function, on the workbench's data.

The organisers' interface (FAIR-Universe/HEP-Challenge, ``ingestion_program/``):

* ``get_train_set(train_size=None, selected_indices=None)`` -> a DataFrame with the
  16 PRI_ columns, ``weights``, ``detailed_labels``, ``labels`` and the 12 DER_
  columns (the public dataset's column order).  ``train_size`` is a count (int) or
  a fraction (float in [0, 1]) drawn without replacement, ``selected_indices``
  picks rows; a subset's weights are rescaled so that their sum stays the full
  set's (as the organisers' loader does with the metadata's ``sum_weights``).
* ``systematics(data_set, tes=1.0, jes=1.0, soft_met=0.0, seed=31415,
  ttbar_scale=None, diboson_scale=None, bkg_scale=None, dopostprocess=True)``
  takes a DataFrame, or a dict with ``data`` (a DataFrame), ``weights`` and other
  per-row entries (and ``settings``, passed through), and returns the same kind:
  shifted primaries, thresholds when ``dopostprocess``, the DER_ features
  recomputed, every other column following the surviving rows (index reset).
* ``predict`` gets ``{"data": DataFrame of the 28 features, "weights": ones}``.

The shifts are the workbench engine's
(:func:`workbench.systematics.engine.apply_systematics`, bit-compatible with the
organisers' soft-MET stream for the same ``seed``), and unlike the organisers'
function the three weight scales are applied (to ``weights``, by
``detailed_labels``): the organisers' code tests for a ``detailedlabel`` column
that never exists and so ignores them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from workbench import DERIVED, FEATURES, PRIMARY, Events, NuisanceParameters
from workbench.data.events import encode_processes
from workbench.systematics.engine import apply_systematics, has_weight_scales, nominal_weight_scales

INSTALL_HINT = "pip install 'fair-workbench[challenge]'"
TRAIN_COLUMNS = (*PRIMARY, "weights", "detailed_labels", "labels", *DERIVED)
"""The public dataset's columns, in its order."""
_ROW = "_challenge_row"


def require_pandas():
    """pandas, or an ImportError that says how to get it (it is an optional extra)."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            f"the challenge-submission strategy needs pandas: {INSTALL_HINT}"
        ) from exc
    return pandas


def events_frame(events: Events, *, labelled: bool):
    """A DataFrame of ``events``: the 28 features, and with ``labelled`` also the
    bookkeeping columns, in the public dataset's column order and dtypes."""
    pd = require_pandas()
    names = TRAIN_COLUMNS if labelled else FEATURES
    cols: dict[str, Any] = {}
    for name in names:
        if name == "weights":
            cols[name] = events.weights.astype(np.float64)
        elif name == "detailed_labels":
            cols[name] = events.detailed_labels.astype(str)
        elif name == "labels":
            cols[name] = events.labels.astype(np.float32)  # float32 in the public file
        else:
            cols[name] = events[name]
    return pd.DataFrame(cols)


def prediction_input(events: Events) -> dict[str, Any]:
    """What ``Model.predict`` receives for one pseudo-experiment."""
    pd = require_pandas()
    return {"data": events_frame(events, labelled=False),
            "weights": pd.Series(events.weights.astype(np.float64), name="weights")}


class TrainSet:
    """The ``get_train_set`` callable handed to ``Model(...)``: the run's training sample.

    Each call returns a fresh DataFrame (submissions pop and reweight columns in
    place).  Random subsets (``train_size``) come from a generator seeded by the
    run, so one spec gives one training set.  The sample stays in the process
    that ran ``fit()``: a pickled copy (a worker's) refuses to be called.
    """

    def __init__(self, events: Events, seed: int):
        self._events: Events | None = events
        self._rng = np.random.default_rng(seed)

    def __call__(self, train_size=None, selected_indices=None):
        if self._events is None:
            raise RuntimeError("get_train_set() is only available in the process that ran "
                               "fit() (this is a pickled copy of the model)")
        events = self._events
        total = len(events)
        rows = None
        if train_size is not None:
            if isinstance(train_size, (int, np.integer)) and not isinstance(train_size, bool):
                size = min(int(train_size), total)
            elif isinstance(train_size, (float, np.floating)):
                if not 0.0 <= train_size <= 1.0:
                    raise ValueError("Sample size must be between 0.0 and 1.0")
                size = int(train_size * total)
            else:
                raise ValueError("Sample size must be an integer or a float")
            if size < 0:
                raise ValueError(f"train_size={train_size} is negative")
            rows = np.sort(self._rng.choice(total, size=size, replace=False))
        elif selected_indices is not None:
            if not isinstance(selected_indices, (list, tuple, np.ndarray)):
                raise ValueError("Selected indices must be a list or a numpy array")
            rows = np.asarray(selected_indices)
            if rows.size and rows.dtype.kind not in "iu":
                raise ValueError("selected_indices must be integers")
            rows = np.sort(rows.astype(np.int64))
            if rows.size and (rows[0] < 0 or rows[-1] >= total):
                raise ValueError(f"selected_indices must lie in [0, {total}), the training "
                                 f"set's size")
        if rows is None:
            return events_frame(events, labelled=True)
        frame = events_frame(events[rows], labelled=True)
        picked = frame["weights"].sum()
        if picked > 0:  # the organisers' loader keeps the total weight of the full set
            frame["weights"] = frame["weights"] * (events.weights.sum() / picked)
        return frame

    def __len__(self) -> int:
        return 0 if self._events is None else len(self._events)

    def __getstate__(self) -> dict[str, Any]:
        return {"_events": None, "_rng": self._rng}


def _column(frame, extras: Mapping[str, Any], name: str):
    """A per-row entry as the organisers' code sees it (dict entries override columns)."""
    if name in extras:
        return extras[name]
    if name in frame.columns:
        return frame[name]
    return None


def _pick(values, rows: np.ndarray, pd):
    """Rows ``rows`` of a column (a Series keeps its dtype), index reset."""
    if isinstance(values, pd.Series):
        return values.iloc[rows].reset_index(drop=True)
    return pd.Series(np.asarray(values)[rows])


def systematics(data_set=None, tes=1.0, jes=1.0, soft_met=0.0, seed=31415, ttbar_scale=None,
                diboson_scale=None, bkg_scale=None, dopostprocess=True):
    """The organisers' ``systematics`` on the workbench engine (see the module docstring)."""
    pd = require_pandas()
    if isinstance(data_set, pd.DataFrame):
        frame, extras, as_dict = data_set, {}, False
    elif isinstance(data_set, Mapping):
        if "data" not in data_set:
            raise ValueError("data_set must contain a 'data' key")
        if "weights" not in data_set:
            raise ValueError("data_set must contain a 'weights' key")
        frame = data_set["data"]
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"data_set['data'] must be a pandas DataFrame, got "
                             f"{type(frame).__name__}")
        extras = {k: v for k, v in data_set.items() if k not in ("data", "settings")}
        as_dict = True
    else:
        raise ValueError("data_set must be a pandas DataFrame or a dictionary")
    n = len(frame)
    missing = [name for name in PRIMARY if name not in frame.columns]
    if missing:
        raise ValueError(f"systematics(): data_set lacks the column(s) {', '.join(missing)}")
    for key, values in extras.items():
        if len(values) != n:
            raise ValueError(f"systematics(): data_set[{key!r}] has {len(values)} rows, "
                             f"data has {n}")
    scales = {"ttbar_scale": ttbar_scale, "diboson_scale": diboson_scale,
              "bkg_scale": bkg_scale}
    try:
        nps = NuisanceParameters(tes=float(tes), jes=float(jes), soft_met=float(soft_met),
                                 **{k: float(v) for k, v in scales.items() if v is not None})
    except ValueError as exc:
        raise ValueError(f"systematics(): {exc} (the workbench engine accepts the "
                         "challenge's clip ranges only)") from None

    fields: dict[str, np.ndarray] = {name: frame[name].to_numpy() for name in PRIMARY}
    fields[_ROW] = np.arange(n, dtype=np.int64)
    weights = _column(frame, extras, "weights")
    if weights is not None:
        fields["weights"] = np.asarray(weights, dtype=np.float64)
        if has_weight_scales(nps):
            labels = _column(frame, extras, "detailed_labels")
            if labels is None:
                print("systematics(): ttbar/diboson/bkg scales need the 'detailed_labels' "
                      "column; weights left unscaled", file=sys.stderr)
                nps = nominal_weight_scales(nps)
            else:
                fields["process"] = encode_processes(np.asarray(labels))
    else:
        nps = nominal_weight_scales(nps)
    shifted = apply_systematics(Events(ak.Array(fields)), nps, seed=int(seed),
                                thresholds=bool(dopostprocess))
    rows = shifted[_ROW]

    out: dict[str, Any] = {}
    for name in frame.columns:
        if name in extras:
            continue  # the organisers' code hands dict entries back outside "data"
        if name in FEATURES:
            out[name] = shifted[name]
        elif name == "weights":
            out[name] = shifted["weights"].astype(frame[name].dtype, copy=False)
        else:
            out[name] = _pick(frame[name], rows, pd)
    for name in DERIVED:
        if name not in out:
            out[name] = shifted[name]
    data = pd.DataFrame(out, index=pd.RangeIndex(len(rows)))
    if not as_dict:
        return data
    result: dict[str, Any] = {}
    for key, values in extras.items():
        if key == "weights":
            dtype = getattr(values, "dtype", np.float64)
            result[key] = pd.Series(shifted["weights"].astype(dtype, copy=False))
        else:
            result[key] = _pick(values, rows, pd)
    result["data"] = data
    if "settings" in data_set:
        result["settings"] = data_set["settings"]
    return result


__all__ = [
    "INSTALL_HINT",
    "TRAIN_COLUMNS",
    "TrainSet",
    "events_frame",
    "prediction_input",
    "require_pandas",
    "systematics",
]
