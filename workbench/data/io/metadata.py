"""Conventions shared by the file formats: errors, atomic writes, dataset metadata JSON.

The public dataset ships a small JSON next to its parquet file
(``FAIR_Universe_HiggsML_data_metadata.json``) with ``total_rows``, ``columns``,
``detailed_labels``, ``sum_weights`` and ``luminosity``.  Files the workbench
writes get one too (``<stem>_metadata.json``), with the same keys plus per-process
rows and sums of weights, so a sampler can know the yields without a pass over
the data, and a ``fingerprint`` of the file it describes (its row count and a
SHA-256 of the parquet footer or of the ROOT tree's branch layout), so that a
metadata file is never used for another or a rewritten data file.

A data file's metadata is only ever its own ``<stem>_metadata.json``
(:func:`find_metadata`); a mismatch between the two is an error naming both.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from workbench.errors import DataFileError

METADATA_SUFFIX = "_metadata.json"
DATASET_COLUMNS = PRIMARY + (WEIGHTS, "detailed_labels", LABELS) + DERIVED
"""Column order of the public dataset's parquet file."""


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
    fingerprint: dict[str, Any] | None = None
    """What identifies the data file: ``rows`` and a ``sha256`` (see :func:`file_fingerprint`)."""
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
        if self.fingerprint:
            out["fingerprint"] = self.fingerprint
        return out


def metadata_path_for(data_path: str | os.PathLike) -> Path:
    """``dir/name.parquet`` -> ``dir/name_metadata.json``."""
    p = Path(data_path)
    return p.with_name(p.stem + METADATA_SUFFIX)


def find_metadata(data_path: str | os.PathLike, *, ignore: bool = False,
                  verify: bool = True, tree: str = "tree") -> Path | None:
    """The metadata JSON of a data file: its own ``<stem>_metadata.json``, if any.

    Another file's metadata in the same folder is never picked up.  With
    ``verify`` (the default) the JSON is read and checked against the data file
    (:func:`check_metadata`): a stale or foreign one raises :class:`DataFileError`
    naming both files.  ``ignore`` returns None (the switch to do without it).
    ``tree``: a ROOT file's tree (for the check).
    """
    if ignore:
        return None
    own = metadata_path_for(data_path)
    if not own.is_file():
        return None
    if verify and Path(data_path).is_file():
        read_metadata(own, data_path=data_path, tree=tree)
    return own


def read_metadata(path: str | os.PathLike, data_path: str | os.PathLike | None = None, *,
                  tree: str = "tree") -> DatasetMetadata:
    """Parse a metadata JSON; errors name the file and the offending key.

    With ``data_path`` the metadata is also checked against that data file
    (:func:`check_metadata`).
    """
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
        fingerprint=raw.get("fingerprint") if isinstance(raw.get("fingerprint"), dict) else None,
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
    if data_path is not None:
        check_metadata(meta, path, data_path, tree=tree)
    return meta


# -- fingerprints ----------------------------------------------------------------
_PARQUET_MAGIC = b"PAR1"


def _parquet_fingerprint(path: Path) -> dict[str, Any]:
    """Rows and the SHA-256 of the footer (schema, row groups, offsets, statistics)."""
    import pyarrow.parquet as pq

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size < 12:
                raise DataFileError(f"{path}: not a parquet file ({size} bytes)")
            f.seek(size - 8)
            tail = f.read(8)
            if tail[4:] != _PARQUET_MAGIC:
                raise DataFileError(f"{path}: not a parquet file (no PAR1 footer; truncated?)")
            length = int.from_bytes(tail[:4], "little")
            if length > size - 12:
                raise DataFileError(f"{path}: corrupt parquet footer length {length}")
            f.seek(size - 8 - length)
            footer = f.read(length)
        rows = pq.ParquetFile(path).metadata.num_rows
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read its parquet footer ({exc})") from None
    return {"rows": int(rows), "sha256": hashlib.sha256(footer).hexdigest()}


def _root_fingerprint(path: Path, tree: str) -> dict[str, Any]:
    """Entries and the SHA-256 of the tree's branches, types and (compressed) byte counts."""
    import uproot

    try:
        with uproot.open(path) as f:
            t = f[tree]
            layout = [[name, str(b.typename), int(b.num_baskets), int(b.compressed_bytes),
                       int(b.uncompressed_bytes)] for name, b in sorted(t.items())]
            rows = int(t.num_entries)
    except Exception as exc:  # noqa: BLE001 - uproot raises many types on bad bytes
        raise DataFileError(
            f"{path}: cannot read ROOT tree {tree!r} ({type(exc).__name__}: {exc})"
        ) from None
    text = json.dumps({"tree": tree, "branches": layout}, sort_keys=True)
    return {"rows": rows, "tree": tree, "sha256": hashlib.sha256(text.encode()).hexdigest()}


def file_fingerprint(data_path: str | os.PathLike, tree: str = "tree") -> dict[str, Any]:
    """``{"rows": N, "sha256": ...}`` of a parquet (footer) or ROOT (tree layout) file.

    Cheap (no data pages are read) and sensitive to any rewrite: the footer holds
    the row groups' byte offsets, sizes and statistics.
    """
    path = Path(data_path)
    if path.suffix == ".root":
        return _root_fingerprint(path, tree)
    return _parquet_fingerprint(path)


def check_metadata(meta: DatasetMetadata, meta_path: str | os.PathLike,
                   data_path: str | os.PathLike, *, tree: str = "tree") -> None:
    """Raise :class:`DataFileError`, naming both files, if ``meta`` is not ``data_path``'s.

    The fingerprint (when the JSON has one) must match, else the row count
    (``total_rows``; the public dataset's JSON has no fingerprint).
    """
    tree = (meta.fingerprint or {}).get("tree", tree)
    actual = file_fingerprint(data_path, tree=tree)
    hint = ("delete or rewrite it, or tell the source to ignore it "
            "(ignore_metadata = true, or find_metadata(..., ignore=True))")
    if meta.fingerprint and "sha256" in meta.fingerprint:
        want = meta.fingerprint
        if want.get("rows") != actual["rows"] or want.get("sha256") != actual["sha256"]:
            raise DataFileError(
                f"metadata file {meta_path} does not describe data file {data_path}: it was "
                f"written for {want.get('rows')} rows with fingerprint "
                f"{str(want.get('sha256'))[:12]}, the file has {actual['rows']} rows and "
                f"fingerprint {actual['sha256'][:12]} (stale metadata?); {hint}"
            )
    if meta.total_rows is not None and meta.total_rows != actual["rows"]:
        raise DataFileError(
            f"metadata file {meta_path} says total_rows={meta.total_rows} but data file "
            f"{data_path} has {actual['rows']} rows (stale metadata?); {hint}"
        )


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
    if LABELS in cols:
        _check_labels(np.asarray(cols[LABELS]), source, first_row)
    try:
        return Events.from_columns(cols, features=features)
    except SchemaError as exc:
        where = f" (rows from {first_row})" if first_row else ""
        raise FileSchemaError(f"{source}{where}: {exc}") from None


def _check_labels(labels: np.ndarray, source: str, first_row: int) -> None:
    """``labels`` must be exactly 0 or 1 before it is cast to int8 (0.5 or NaN would
    silently become 0)."""
    if labels.dtype.kind not in "biuf":
        return  # the container reports non-numeric columns itself
    bad = ~((labels == 0) | (labels == 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FileSchemaError(
            f"{source}: column {LABELS!r} must hold exactly 0 or 1, but {int(bad.sum())} "
            f"row(s) do not, first row {first_row + i} = {labels[i]}"
        )


def check_columns(available: list[str], wanted: list[str], source: str) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise FileSchemaError(
            f"{source}: missing column(s) {', '.join(missing)}; "
            f"the file has {', '.join(available) or '(none)'}"
        )
