"""Conventions shared by the file formats: errors, atomic writes, dataset metadata JSON.

The public dataset ships a small JSON next to its parquet file
(``FAIR_Universe_HiggsML_data_metadata.json``) with ``total_rows``, ``columns``,
``detailed_labels``, ``sum_weights`` and ``luminosity``; the official loader
finds it by the ``_metadata.json`` suffix.  Files the workbench writes get one
too (``<stem>_metadata.json``), with the same keys plus per-process rows and sums
of weights, so a sampler can know the yields without a pass over the data.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.events import LABELS, PROCESS, WEIGHTS, Events, SchemaError
from workbench.data.schema import DERIVED, FEATURES, LUMINOSITY_FB, PRIMARY, PROCESSES

METADATA_SUFFIX = "_metadata.json"
DATASET_COLUMNS = PRIMARY + (WEIGHTS, "detailed_labels", LABELS) + DERIVED
"""Column order of the public dataset's parquet file."""


class DataFileError(ValueError):
    """A data file cannot be read or written; the message names the file."""


class FileSchemaError(DataFileError, SchemaError):
    """A data file's content breaks the schema; the message names file and column."""


# -- atomic writing ------------------------------------------------------------
class AtomicFile:
    """A temporary file in the target's directory, renamed over the target on commit.

    A crash or exception leaves any previous file untouched and no partial file
    behind (same directory, so ``os.replace`` is atomic on POSIX).  Use as a
    context manager (commit on success, discard on exception) or call
    :meth:`commit` / :meth:`discard` yourself.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.target = Path(path)
        if not self.target.parent.is_dir():
            raise DataFileError(
                f"cannot write {self.target}: directory {self.target.parent} does not exist"
            )
        fd, tmp = tempfile.mkstemp(
            dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp"
        )
        os.close(fd)
        self.tmp = Path(tmp)
        # mkstemp makes 0600 files; give the result the usual umask-based mode
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)
        self.done = False

    def commit(self) -> Path:
        if not self.done:
            os.replace(self.tmp, self.target)
            self.done = True
        return self.target

    def discard(self) -> None:
        if not self.done:
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()
            self.done = True

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()



class AtomicWriter:
    """Base of the chunked event writers: the target appears only on a clean close.

    Subclasses set ``self._atomic`` (an :class:`AtomicFile`) and ``self._stats``,
    implement ``close()``, ``_start(labelled)``, ``_is_open()`` and
    ``_close_handle()`` (close the open file handle, if any).
    """

    _atomic: AtomicFile
    _stats: _Stats
    path: Path

    def _is_open(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def _start(self, labelled: bool) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> Path:  # pragma: no cover - overridden
        raise NotImplementedError

    def _prepare(self, events) -> None:
        """Open on the first chunk; refuse writes after close and mixed labelling."""
        if self._atomic.done:
            raise DataFileError(f"writer for {self.path} is already closed")
        if not self._is_open():
            self._start(events.is_labelled)
        elif events.is_labelled != self._stats.labelled:
            raise SchemaError(
                f"cannot write {self.path}: chunks mix labelled and unlabelled events "
                f"(column {PROCESS!r} present in some chunks only)"
            )

    def _close_handle(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def abort(self) -> None:
        """Drop everything written so far; the target path is left untouched."""
        with contextlib.suppress(Exception):
            self._close_handle()
        self._atomic.discard()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

# -- metadata JSON -------------------------------------------------------------
@dataclass
class DatasetMetadata:
    """What a ``*_metadata.json`` file says about its parquet file.

    ``rows_per_process`` / ``sum_weights_per_process`` are only present in files
    the workbench wrote (the public dataset's JSON has totals only).
    """

    total_rows: int | None = None
    columns: list[str] = field(default_factory=list)
    detailed_labels: list[str] = field(default_factory=list)
    sum_weights: float | None = None
    luminosity: float | None = None
    rows_per_process: dict[str, int] = field(default_factory=dict)
    sum_weights_per_process: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_events_stats(
        cls, rows: Mapping[str, int], sums: Mapping[str, float], columns: list[str],
        total_rows: int, sum_weights: float, labelled: bool,
    ) -> "DatasetMetadata":
        return cls(
            total_rows=total_rows,
            columns=list(columns),
            detailed_labels=[p for p in PROCESSES if rows.get(p, 0) > 0] if labelled else [],
            sum_weights=sum_weights,
            luminosity=LUMINOSITY_FB,
            rows_per_process=dict(rows) if labelled else {},
            sum_weights_per_process=dict(sums) if labelled else {},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "author": "fair-workbench",
            "total_rows": self.total_rows,
            "total_columns": len(self.columns),
            "columns": self.columns,
            "detailed_labels": self.detailed_labels,
            "sum_weights": self.sum_weights,
            "luminosity": self.luminosity,
        }
        if self.rows_per_process:
            out["rows_per_process"] = self.rows_per_process
            out["sum_weights_per_process"] = self.sum_weights_per_process
        return out


def metadata_path_for(data_path: str | os.PathLike) -> Path:
    """``dir/name.parquet`` -> ``dir/name_metadata.json``."""
    p = Path(data_path)
    return p.with_name(p.stem + METADATA_SUFFIX)


def find_metadata(data_path: str | os.PathLike) -> Path | None:
    """The metadata JSON belonging to a data file, if any.

    ``<stem>_metadata.json`` first; otherwise, like the official loader, the
    only ``*_metadata.json`` in the directory (ambiguous directories give None).
    """
    own = metadata_path_for(data_path)
    if own.is_file():
        return own
    candidates = sorted(Path(data_path).parent.glob("*" + METADATA_SUFFIX))
    return candidates[0] if len(candidates) == 1 else None


def read_metadata(path: str | os.PathLike) -> DatasetMetadata:
    """Parse a metadata JSON; errors name the file and the offending key."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(f"metadata file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFileError(f"metadata file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise DataFileError(f"metadata file {path}: expected a JSON object")

    def get(key, kind, default=None):
        value = raw.get(key, default)
        if value is None or value is default:
            return value
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise DataFileError(
                f"metadata file {path}: key {key!r} has invalid value {value!r}"
            ) from None

    meta = DatasetMetadata(
        total_rows=get("total_rows", int),
        columns=list(raw.get("columns", [])),
        detailed_labels=list(raw.get("detailed_labels", [])),
        sum_weights=get("sum_weights", float),
        luminosity=get("luminosity", float),
        rows_per_process={k: int(v) for k, v in raw.get("rows_per_process", {}).items()},
        sum_weights_per_process={
            k: float(v) for k, v in raw.get("sum_weights_per_process", {}).items()
        },
        raw=raw,
    )
    unknown = [
        p for p in list(meta.detailed_labels) + list(meta.rows_per_process)
        if p not in PROCESSES
    ]
    if unknown:
        raise DataFileError(
            f"metadata file {path}: unknown process label(s) {sorted(set(unknown))} "
            f"in 'detailed_labels'; valid: {', '.join(PROCESSES)}"
        )
    return meta


def write_metadata(meta: DatasetMetadata, path: str | os.PathLike) -> Path:
    """Write a metadata JSON atomically; returns its path."""
    path = Path(path)
    with AtomicFile(path) as tmp:
        tmp.write_text(json.dumps(meta.to_dict(), indent=4) + "\n", encoding="utf-8")
    return path


class _Stats:
    """Running rows and sums of weights per process while a file is written."""

    def __init__(self) -> None:
        self.rows = np.zeros(len(PROCESSES), dtype=np.int64)
        self.sums = np.zeros(len(PROCESSES), dtype=np.float64)
        self.total_rows = 0
        self.total_sum = 0.0
        self.labelled: bool | None = None

    def add(self, events: Events, stored_weights: np.ndarray) -> None:
        self.total_rows += len(events)
        self.total_sum += float(stored_weights.sum(dtype=np.float64))
        if events.is_labelled:
            codes = events[PROCESS]
            self.rows += np.bincount(codes, minlength=len(PROCESSES))
            self.sums += np.bincount(codes, weights=stored_weights, minlength=len(PROCESSES))

    def metadata(self, columns: list[str]) -> DatasetMetadata:
        return DatasetMetadata.from_events_stats(
            {p: int(self.rows[i]) for i, p in enumerate(PROCESSES)},
            {p: float(self.sums[i]) for i, p in enumerate(PROCESSES)},
            columns, self.total_rows, self.total_sum, bool(self.labelled),
        )


# -- arrays -> Events ----------------------------------------------------------
def events_from_arrays(
    cols: dict[str, np.ndarray], source: str, *, first_row: int = 0,
    features: tuple[str, ...] | None = None,
) -> Events:
    """Validate one chunk read from ``source``; errors name the file and rows.

    ``cols`` holds numeric arrays; the process must already be an int8 code
    column ``process`` (string labels are encoded by the reader, which knows
    the file's dictionary).
    """
    if features is None:
        features = tuple(n for n in FEATURES if n in cols)
    try:
        return Events.from_columns(cols, features=features)
    except SchemaError as exc:
        where = f" (rows from {first_row})" if first_row else ""
        raise FileSchemaError(f"{source}{where}: {exc}") from None


def check_columns(available: list[str], wanted: list[str], source: str) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise FileSchemaError(
            f"{source}: missing column(s) {', '.join(missing)}; "
            f"the file has {', '.join(available) or '(none)'}"
        )
