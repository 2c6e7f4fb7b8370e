"""Parquet files in the public dataset's layout, read and written in bounded memory.

Reading streams record batches (``iter_parquet``) so a 16 GB / 280M-row file is
never materialised; ``read_parquet`` is the same stream concatenated.  Writing
goes through :class:`ParquetEventWriter`, which buffers to full row groups,
writes the dataset's exact schema (28 features, ``weights`` and ``labels``
float32, ``detailed_labels`` string, in the dataset's column order) to a
temporary file and renames it into place on success, then writes the
``<stem>_metadata.json`` with per-process rows and sums of weights.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workbench.data.derived import compute_derived
from workbench.data.events import LABELS, PROCESS, WEIGHTS, Events, SchemaError
from workbench.data.io.metadata import (
    DATASET_COLUMNS,
    AtomicFile,
    AtomicWriter,
    DataFileError,
    FileSchemaError,
    _Stats,
    check_columns,
    events_from_arrays,
    file_fingerprint,
    metadata_path_for,
    write_metadata,
)
from workbench.data.schema import DERIVED, FEATURES, PRIMARY, PROCESSES, process_code

DEFAULT_BATCH_SIZE = 1 << 18
"""Rows per streamed batch (262144 rows x 31 columns ~ 32 MB of float32)."""
DEFAULT_ROW_GROUP_SIZE = 1 << 20
"""Rows per written row group (~125 MB uncompressed): large enough for fast
scans, small enough that one row group fits comfortably in memory."""
DETAILED_LABELS = "detailed_labels"
SCHEMA_COLUMNS = set(FEATURES) | {WEIGHTS, LABELS, DETAILED_LABELS}
_FORMAT_KEY = b"workbench.format"
_FORMAT = b"fair-universe-higgsml/1"
_LABEL_VALUES = pa.array(PROCESSES, type=pa.large_string())


def dataset_schema(labelled: bool = True) -> pa.Schema:
    """The public dataset's arrow schema (truth columns only when ``labelled``)."""
    fields = []
    for name in DATASET_COLUMNS:
        if name == DETAILED_LABELS:
            if labelled:
                fields.append(pa.field(name, pa.large_string()))
        elif name == LABELS:
            if labelled:
                fields.append(pa.field(name, pa.float32()))
        else:
            fields.append(pa.field(name, pa.float32()))
    meta = {_FORMAT_KEY: _FORMAT, b"workbench.processes": json.dumps(PROCESSES).encode()}
    return pa.schema(fields, metadata=meta)


# -- reading -------------------------------------------------------------------
def _open(path: str | os.PathLike, *, dictionary: bool = True) -> pq.ParquetFile:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parquet file {path} does not exist")
    try:
        pf = pq.ParquetFile(path, pre_buffer=False, page_checksum_verification=True)
        if dictionary and DETAILED_LABELS in pf.schema_arrow.names:
            # detailed_labels as a dictionary: no per-row Python strings, cheap encoding
            pf = pq.ParquetFile(path, read_dictionary=[DETAILED_LABELS], pre_buffer=False,
                                page_checksum_verification=True)
        return pf
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(f"{path}: not a readable parquet file ({exc})") from None


def parquet_row_groups(path: str | os.PathLike) -> list[int]:
    """Rows in each row group, from the footer (no data read)."""
    md = _open(path).metadata
    return [md.row_group(i).num_rows for i in range(md.num_row_groups)]


def parquet_columns(path: str | os.PathLike) -> list[str]:
    return list(_open(path).schema_arrow.names)


def encode_labels(array: pa.Array | pa.ChunkedArray, source: str) -> np.ndarray:
    """``detailed_labels`` strings -> int8 process codes; errors name the bad values."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_dictionary(array.type):
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            raise FileSchemaError(
                f"{source}: column {DETAILED_LABELS!r} has type {array.type}, expected strings"
            )
        array = pc.dictionary_encode(array)
    if array.null_count:
        raise FileSchemaError(
            f"{source}: column {DETAILED_LABELS!r} has {array.null_count} missing value(s)"
        )
    words = array.dictionary.to_pylist()
    lut = np.array([PROCESSES.index(w) if w in PROCESSES else -1 for w in words], np.int8)
    indices = array.indices.to_numpy(zero_copy_only=False)
    codes = lut[indices] if len(lut) else np.zeros(0, np.int8)
    if (codes < 0).any():
        bad = sorted({words[i] for i in np.unique(indices[codes < 0]).tolist()})
        raise FileSchemaError(
            f"{source}: column {DETAILED_LABELS!r} has unknown process label(s) {bad}; "
            f"valid: {', '.join(PROCESSES)}"
        )
    return codes


def _plan_columns(
    available: list[str], columns: Sequence[str] | None, derive: bool, process: str | None,
    source: str,
) -> tuple[list[str], list[str]]:
    """(columns to read, columns to compute) for a request."""
    if columns is None:
        wanted = list(FEATURES)
        if derive and not all(c in available for c in DERIVED):
            wanted = list(PRIMARY)
        check_columns(available, wanted, source)
        extra = [c for c in (WEIGHTS, LABELS, DETAILED_LABELS) if c in available]
        if process is not None:
            extra = [c for c in extra if c not in (LABELS, DETAILED_LABELS)]
        compute = [c for c in DERIVED if c not in wanted] if derive else []
        return wanted + extra, compute
    unknown = [c for c in columns if c not in SCHEMA_COLUMNS]
    if unknown:
        raise SchemaError(
            f"unknown column(s) requested: {', '.join(unknown)}; valid: the 28 features, "
            f"{WEIGHTS}, {LABELS}, {DETAILED_LABELS}"
        )
    check_columns(available, list(columns), source)
    return list(columns), []


def _iter_raw(
    path, batch_size: int, columns: Sequence[str] | None, max_events: int | None,
    derive: bool, process: str | None, row_groups: Sequence[int] | None,
) -> Iterator[tuple[int, dict[str, np.ndarray], tuple[str, ...]]]:
    """(first row, numeric columns incl. ``process`` codes, feature names) per batch."""
    source = str(path)
    pf = _open(path)
    read, compute = _plan_columns(pf.schema_arrow.names, columns, derive, process, source)
    features = tuple(c for c in FEATURES if c in read or c in compute)
    code = process_code(process) if process is not None else None
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    start = 0
    if row_groups is not None:  # first row of the first selected group, for messages
        sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
        start = int(sum(sizes[: min(row_groups)])) if len(row_groups) else 0
    remaining = max_events
    try:
        batches = pf.iter_batches(
            batch_size=batch_size, columns=read, row_groups=row_groups, use_threads=True
        )
        for batch in batches:
            if remaining is not None:
                if remaining <= 0:
                    break
                if batch.num_rows > remaining:
                    batch = batch.slice(0, remaining)
                remaining -= batch.num_rows
            cols: dict[str, np.ndarray] = {}
            for name, arr in zip(batch.schema.names, batch.columns):
                if name == DETAILED_LABELS:
                    cols[PROCESS] = encode_labels(arr, source)
                else:
                    cols[name] = arr.to_numpy(zero_copy_only=False)
            if code is not None:
                cols[PROCESS] = np.full(batch.num_rows, code, np.int8)
            if compute:
                cols.update(compute_derived({c: cols[c] for c in PRIMARY}))
            yield start, cols, features
            start += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(
            f"{source}: corrupt or truncated parquet data near row {start} ({exc})"
        ) from None


def iter_parquet(
    path: str | os.PathLike,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    columns: Sequence[str] | None = None,
    max_events: int | None = None,
    derive: bool = False,
    process: str | None = None,
    row_groups: Sequence[int] | None = None,
) -> Iterator[Events]:
    """Stream a parquet file as validated :class:`Events` batches of ``batch_size`` rows.

    Memory stays bounded by about one row group plus one batch.  ``columns=None``
    reads the 28 features plus whatever of weights/labels/detailed_labels the
    file has; ``derive`` computes missing ``DER_`` columns from the primaries;
    ``process`` labels every event of a single-process file (e.g. the
    ``ttbar_only`` sample) and ignores any truth columns in it.
    """
    for start, cols, features in _iter_raw(
        path, batch_size, columns, max_events, derive, process, row_groups
    ):
        yield events_from_arrays(cols, str(path), first_row=start, features=features)


def read_parquet(
    path: str | os.PathLike,
    *,
    columns: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_events: int | None = None,
    derive: bool = False,
    process: str | None = None,
) -> Events:
    """Read a whole parquet file (or its first ``max_events`` rows) into Events.

    Batches are copied into arrays preallocated from the footer's row count, so
    the peak is about the result plus one row group, not twice the result.
    """
    pf = _open(path)
    total = pf.metadata.num_rows if max_events is None else min(pf.metadata.num_rows, max_events)
    out: dict[str, np.ndarray] = {}
    features: tuple[str, ...] = ()
    filled = 0
    for start, cols, features in _iter_raw(
        path, batch_size, columns, max_events, derive, process, None
    ):
        n = len(next(iter(cols.values())))
        if filled + n > total:
            raise DataFileError(f"{path}: more rows than the footer's {total}")
        for name, arr in cols.items():
            if name not in out:
                out[name] = np.empty(total, dtype=arr.dtype)
            out[name][filled : filled + n] = arr
        filled += n
    if not out:  # empty file: right columns, zero rows
        read, compute = _plan_columns(pf.schema_arrow.names, columns, derive, process, str(path))
        features = tuple(c for c in FEATURES if c in read or c in compute)
        names = [c for c in read if c != DETAILED_LABELS] + list(compute)
        if DETAILED_LABELS in read or process is not None:
            names.append(PROCESS)
        out = {n: np.zeros(0, np.int8 if n == PROCESS else np.float32) for n in names}
    elif filled < total:
        raise DataFileError(f"{path}: footer promises {total} rows, only {filled} could be read")
    return events_from_arrays(out, str(path), features=features)


# -- writing -------------------------------------------------------------------
def _to_table(events: Events, schema: pa.Schema, target: Path) -> tuple[pa.Table, np.ndarray]:
    missing = [f for f in FEATURES if f not in events]
    if missing:
        raise SchemaError(f"cannot write {target}: missing column(s) {', '.join(missing)}")
    weights = events[WEIGHTS].astype(np.float32)
    arrays = []
    for field in schema:
        name = field.name
        if name == WEIGHTS:
            arrays.append(pa.array(weights))
        elif name == DETAILED_LABELS:
            arrays.append(_LABEL_VALUES.take(pa.array(events[PROCESS])))
        elif name == LABELS:
            arrays.append(pa.array(events[LABELS].astype(np.float32)))
        else:
            arrays.append(pa.array(events[name]))
    return pa.Table.from_arrays(arrays, schema=schema), weights


class ParquetEventWriter(AtomicWriter):
    """Write Events chunk by chunk into one parquet file, atomically.

    >>> with ParquetEventWriter("out.parquet") as w:   # doctest: +SKIP
    ...     for chunk in chunks:
    ...         w.write(chunk)

    The file appears under its name only when the ``with`` block ends without
    an exception (temporary file + ``os.replace``); then the metadata JSON is
    written next to it (``metadata=False`` skips it, a path chooses its name).
    Labelled-ness is fixed by the first chunk; weights and labels are stored
    as float32 like the public dataset, and the metadata sums use those stored
    values so they match what a reader sums.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
        metadata: bool | str | os.PathLike = True,
        compression: str = "snappy",
    ) -> None:
        if row_group_size <= 0:
            raise ValueError(f"row_group_size must be positive, got {row_group_size}")
        self.path = Path(path)
        self.row_group_size = row_group_size
        self.compression = compression
        self.metadata_path = (
            None if metadata is False
            else metadata_path_for(self.path) if metadata is True
            else Path(metadata)
        )
        self._atomic = AtomicFile(self.path)
        self._writer: Any = None
        self._schema: Any = None
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._stats = _Stats()

    def _start(self, labelled: bool) -> None:
        self._schema = dataset_schema(labelled)
        self._stats.labelled = labelled
        try:
            # page CRCs: a flipped bit in a data page is an error on read, not a changed value
            self._writer = pq.ParquetWriter(
                self._atomic.tmp, self._schema, compression=self.compression,
                write_page_checksum=True,
            )
        except (pa.ArrowException, OSError) as exc:
            raise DataFileError(f"cannot write {self.path}: {exc}") from None

    def _is_open(self) -> bool:
        return self._writer is not None

    def write(self, events: Events) -> None:
        self._prepare(events)
        table, weights = _to_table(events, self._schema, self.path)
        self._stats.add(events, weights)
        self._buffer.append(table)
        self._buffered += len(table)
        if self._buffered >= self.row_group_size:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer)
        n_full = len(table) if final else (len(table) // self.row_group_size) * self.row_group_size
        if n_full:
            self._writer.write_table(table.slice(0, n_full), row_group_size=self.row_group_size)
        rest = table.slice(n_full)
        self._buffer = [rest] if len(rest) else []
        self._buffered = len(rest)

    def close(self) -> Path:
        """Finish the file, move it into place and write the metadata JSON."""
        if self._atomic.done:
            return self.path
        try:
            if self._writer is None:
                self._start(True)
            self._flush(final=True)
            self._writer.close()
        except BaseException:
            self.abort()
            raise
        self._atomic.commit()
        if self.metadata_path is not None:
            meta = self._stats.metadata(list(self._schema.names))
            meta.fingerprint = file_fingerprint(self.path)
            write_metadata(meta, self.metadata_path)
        return self.path

    def _close_handle(self) -> None:
        if self._writer is not None:
            self._writer.close()


def write_parquet(
    events: Events,
    path: str | os.PathLike,
    *,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    metadata: bool | str | os.PathLike = True,
    compression: str = "snappy",
) -> Path:
    """Write one sample atomically in the public dataset's schema (+ metadata JSON)."""
    with ParquetEventWriter(
        path, row_group_size=row_group_size, metadata=metadata, compression=compression
    ) as writer:
        for start in range(0, max(len(events), 1), row_group_size):
            writer.write(events[start : start + row_group_size])
    return Path(path)
