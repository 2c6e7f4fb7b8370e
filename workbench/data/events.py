"""The event container: a columnar sample on an awkward record array.

Features are float32 (as in the public dataset), weights float64, labels int8 and
the process as an int8 code into :data:`workbench.data.schema.PROCESSES`.  Truth
columns (``labels``, ``process``) are optional so that an unlabelled
pseudo-experiment is an ``Events`` too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import awkward as ak
import numpy as np

from workbench.data.schema import FEATURES, PROCESSES
from workbench.errors import WorkbenchError

WEIGHTS = "weights"
LABELS = "labels"
PROCESS = "process"
TRUTH = (LABELS, PROCESS)
_DTYPES = {WEIGHTS: np.float64, LABELS: np.int8, PROCESS: np.int8}


class SchemaError(WorkbenchError, ValueError):
    """An event sample does not follow the schema; the message names the column."""


def _as_column(name: str, values, dtype) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise SchemaError(f"column {name!r} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise SchemaError(
            f"column {name!r} has dtype {arr.dtype}, expected a numeric dtype"
        )
    return np.ascontiguousarray(arr, dtype=dtype)


@dataclass(frozen=True, eq=False)
class Events:
    """A weighted, optionally labelled event sample.

    Build one with :meth:`from_columns`; access a column as a NumPy view with
    ``events["PRI_met"]``; select with a boolean mask or slice (``events[mask]``).
    """

    array: ak.Array

    # -- construction -------------------------------------------------------
    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, Iterable],
        *,
        features: tuple[str, ...] = FEATURES,
        validate: bool = True,
        allow_extra: bool = False,
    ) -> "Events":
        """Build from a mapping of column name -> 1D array.

        ``weights`` defaults to ones.  ``detailed_labels`` given as strings is
        converted to the ``process`` code, and ``labels`` is derived from it when
        absent.  With ``validate`` the schema is checked (see :meth:`validate`).
        """
        cols = dict(columns)
        if "detailed_labels" in cols:
            if PROCESS in cols:
                raise SchemaError("give either 'detailed_labels' or 'process', not both")
            cols[PROCESS] = encode_processes(cols.pop("detailed_labels"))
        missing = [name for name in features if name not in cols]
        if missing:
            raise SchemaError(
                f"missing column(s): {', '.join(missing)}"
            )
        known = set(features) | {WEIGHTS, LABELS, PROCESS}
        extra = [name for name in cols if name not in known]
        if extra and not allow_extra:
            raise SchemaError(
                f"unexpected column(s): {', '.join(extra)}; expected the features plus "
                f"{', '.join((WEIGHTS, LABELS, 'detailed_labels'))}"
            )
        # length from any given column, so a features-free sample (weights/truth only) works
        n = len(np.asarray(next(iter(cols.values())))) if cols else 0
        out = {}
        for name in features:
            out[name] = _as_column(name, cols[name], np.float32)
        out[WEIGHTS] = _as_column(
            WEIGHTS, cols[WEIGHTS] if WEIGHTS in cols else np.ones(n), np.float64
        )
        if PROCESS in cols:
            out[PROCESS] = _as_column(PROCESS, cols[PROCESS], np.int8)
            if LABELS not in cols:
                out[LABELS] = (out[PROCESS] == 0).astype(np.int8)
        if LABELS in cols:
            out[LABELS] = _as_column(LABELS, cols[LABELS], np.int8)
        lengths = {name: len(v) for name, v in out.items()}
        if len(set(lengths.values())) > 1:
            raise SchemaError(f"columns have different lengths: {lengths}")
        events = cls(ak.Array(out))
        if validate:
            events.validate()
        return events

    def validate(self) -> "Events":
        """Check finiteness of features, non-negative finite weights, known labels."""
        for name in self.fields:
            col = self[name]
            if col.dtype.kind == "f":
                bad = ~np.isfinite(col)
                if bad.any():
                    first = int(np.flatnonzero(bad)[0])
                    raise SchemaError(
                        f"column {name!r} has {int(bad.sum())} non-finite value(s) "
                        f"(NaN/inf), first at row {first}"
                    )
        w = self[WEIGHTS]
        if (w < 0).any():
            first = int(np.flatnonzero(w < 0)[0])
            raise SchemaError(
                f"column 'weights' has {int((w < 0).sum())} negative value(s), "
                f"first at row {first}"
            )
        if PROCESS in self.fields:
            codes = self[PROCESS]
            bad = (codes < 0) | (codes >= len(PROCESSES))
            if bad.any():
                raise SchemaError(
                    f"column 'process' has unknown code(s) {sorted(set(codes[bad].tolist()))}; "
                    f"valid: 0..{len(PROCESSES) - 1} ({', '.join(PROCESSES)})"
                )
        if LABELS in self.fields:
            labels = self[LABELS]
            if not np.isin(labels, (0, 1)).all():
                raise SchemaError("column 'labels' must hold only 0 and 1")
            if PROCESS in self.fields and ((self[PROCESS] == 0) != (labels == 1)).any():
                raise SchemaError(
                    "column 'labels' disagrees with 'detailed_labels' (1 means htautau)"
                )
        return self

    # -- access -------------------------------------------------------------
    @property
    def fields(self) -> list[str]:
        return list(self.array.fields)

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.array.fields:
                raise KeyError(
                    f"no column {key!r}; available: {', '.join(self.array.fields)}"
                )
            return ak.to_numpy(self.array[key])
        return Events(self.array[key])

    def __contains__(self, name: str) -> bool:
        return name in self.array.fields

    def columns(self) -> dict[str, np.ndarray]:
        """All columns as NumPy arrays (views, no copy)."""
        return {name: self[name] for name in self.fields}

    @property
    def weights(self) -> np.ndarray:
        return self[WEIGHTS]

    @property
    def labels(self) -> np.ndarray:
        return self[LABELS]

    @property
    def process(self) -> np.ndarray:
        return self[PROCESS]

    @property
    def detailed_labels(self) -> np.ndarray:
        """Process labels as strings, as in the public dataset."""
        return decode_processes(self[PROCESS])

    @property
    def is_labelled(self) -> bool:
        return PROCESS in self.array.fields

    def feature_matrix(self, names: tuple[str, ...] = FEATURES) -> np.ndarray:
        """Features stacked as an (n_events, n_features) float32 matrix."""
        out = np.empty((len(self), len(names)), dtype=np.float32)
        for j, name in enumerate(names):
            out[:, j] = self[name]
        return out

    # -- transformation -----------------------------------------------------
    def with_columns(self, **columns) -> "Events":
        """A new sample with some columns replaced or added (dtypes kept)."""
        out = self.columns()
        for name, values in columns.items():
            dtype = _DTYPES.get(name, np.float32)
            out[name] = _as_column(name, values, dtype)
        return Events(ak.Array(out))

    def without_truth(self) -> "Events":
        """The sample with labels and process removed and unit weights (what a PE shows)."""
        cols = {k: v for k, v in self.columns().items() if k not in TRUTH}
        cols[WEIGHTS] = np.ones(len(self))
        return Events(ak.Array(cols))

    def of_process(self, name: str) -> "Events":
        from workbench.data.schema import process_code

        return self[self[PROCESS] == process_code(name)]

    def sum_weights(self, by_process: bool = False):
        if not by_process:
            return float(self[WEIGHTS].sum())
        codes = self[PROCESS]
        sums = np.bincount(codes, weights=self[WEIGHTS], minlength=len(PROCESSES))
        return {name: float(sums[i]) for i, name in enumerate(PROCESSES)}

    @staticmethod
    def concatenate(samples: list["Events"]) -> "Events":
        if not samples:
            raise ValueError("nothing to concatenate")
        return Events(ak.concatenate([s.array for s in samples]))

    def __repr__(self) -> str:
        truth = "labelled" if self.is_labelled else "unlabelled"
        return f"<Events {len(self)} events, {truth}, {len(self.fields)} columns>"


def encode_processes(labels) -> np.ndarray:
    """Process label strings -> int8 codes; raises naming the unknown labels."""
    arr = np.asarray(labels)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int8)
    arr = arr.astype(str)
    uniques, inverse = np.unique(arr, return_inverse=True)
    unknown = [u for u in uniques.tolist() if u not in PROCESSES]
    if unknown:
        raise SchemaError(
            f"column 'detailed_labels' has unknown process label(s) {unknown}; "
            f"valid: {', '.join(PROCESSES)}"
        )
    lut = np.array([PROCESSES.index(u) for u in uniques.tolist()], dtype=np.int8)
    return lut[inverse.reshape(-1)]


def decode_processes(codes: np.ndarray) -> np.ndarray:
    return np.asarray(PROCESSES, dtype=object)[np.asarray(codes, dtype=np.intp)]
