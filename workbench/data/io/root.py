"""Flat ROOT TTrees via uproot, with the public dataset's branch names.

uproot writes string columns only as RNTuple, not into a TTree, so the process
is stored as an int8 branch ``process`` (code into
:data:`workbench.data.schema.PROCESSES`: 0 htautau, 1 ztautau, 2 ttbar, 3 diboson)
and the mapping is saved next to the tree as a ``TObjString`` named
``process_labels`` (comma-separated labels in code order); a reader remaps if
a file's mapping differs.  Features, ``weights`` and ``labels`` are float32
branches, as in the parquet files.  Reading streams with ``TTree.iterate``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import uproot

from workbench.data.derived import compute_derived
from workbench.data.events import LABELS, PROCESS, WEIGHTS, Events, SchemaError
from workbench.data.io.metadata import (
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

DEFAULT_STEP_SIZE = 1 << 18
MAPPING_KEY = "process_labels"
SCHEMA_BRANCHES = set(FEATURES) | {WEIGHTS, LABELS, PROCESS}


def _branch_types(labelled: bool) -> dict[str, str]:
    types = {name: "f4" for name in FEATURES[: len(PRIMARY)]}
    types[WEIGHTS] = "f4"
    if labelled:
        types[PROCESS] = "i1"
        types[LABELS] = "f4"
    types.update({name: "f4" for name in DERIVED})
    return types


COMPRESSION = {
    "zstd": lambda: uproot.ZSTD(1),
    "zlib": lambda: uproot.ZLIB(1),
    "lz4": lambda: uproot.LZ4(1),
    "none": lambda: None,
}
"""Writer compression choices; zstd level 1 writes ~10x faster than uproot's zlib
default at the same file size (ROOT reads it since 6.20)."""


class RootEventWriter(AtomicWriter):
    """Write Events chunk by chunk into a flat TTree, atomically (temp file + rename).

    Each ``write`` call becomes one basket per branch, so pass chunks of
    ~10^5-10^6 events.  ``metadata=True`` also writes ``<stem>_metadata.json``.
    """

    def __init__(
        self, path: str | os.PathLike, tree: str = "tree", *,
        metadata: bool | str | os.PathLike = False, compression: str = "zstd",
    ) -> None:
        if compression not in COMPRESSION:
            raise ValueError(
                f"compression={compression!r}; valid: {', '.join(COMPRESSION)}"
            )
        self.compression = COMPRESSION[compression]()
        self.path = Path(path)
        self.tree = tree
        self.metadata_path = (
            None if metadata is False
            else metadata_path_for(self.path) if metadata is True
            else Path(metadata)
        )
        self._atomic = AtomicFile(self.path)
        self._file: Any = None
        self._types: dict[str, str] = {}
        self._stats = _Stats()

    def _start(self, labelled: bool) -> None:
        self._types = _branch_types(labelled)
        self._stats.labelled = labelled
        try:
            self._file = uproot.recreate(self._atomic.tmp, compression=self.compression)
            self._file.mktree(self.tree, self._types)
            if labelled:
                self._file[MAPPING_KEY] = ",".join(PROCESSES)
        except Exception as exc:  # noqa: BLE001 - uproot raises many types
            self.abort()
            raise DataFileError(f"cannot write {self.path}: {exc}") from None

    def _is_open(self) -> bool:
        return self._file is not None

    def write(self, events: Events) -> None:
        self._prepare(events)
        missing = [f for f in FEATURES if f not in events]
        if missing:
            raise SchemaError(f"cannot write {self.path}: missing column(s) {', '.join(missing)}")
        if len(events) == 0:
            return
        data = {name: events[name].astype(dtype, copy=False)
                for name, dtype in self._types.items()}
        self._stats.add(events, data[WEIGHTS])
        self._file[self.tree].extend(data)

    def close(self) -> Path:
        if self._atomic.done:
            return self.path
        try:
            if self._file is None:
                self._start(True)
            self._file.close()
        except BaseException:
            self.abort()
            raise
        self._atomic.commit()
        if self.metadata_path is not None:
            meta = self._stats.metadata(list(self._types))
            meta.fingerprint = file_fingerprint(self.path, tree=self.tree)
            write_metadata(meta, self.metadata_path)
        return self.path

    def _close_handle(self) -> None:
        if self._file is not None:
            self._file.close()


def write_root(
    events: Events, path: str | os.PathLike, tree: str = "tree", *,
    chunk_size: int = 1 << 20, metadata: bool | str | os.PathLike = False,
    compression: str = "zstd",
) -> Path:
    """Write one sample as a flat TTree (atomically)."""
    with RootEventWriter(path, tree, metadata=metadata, compression=compression) as writer:
        for start in range(0, len(events), chunk_size):
            writer.write(events[start : start + chunk_size])
    return Path(path)


def _open_tree(path: str | os.PathLike, tree: str):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ROOT file {path} does not exist")
    try:
        f = uproot.open(path)
    except Exception as exc:  # noqa: BLE001 - uproot raises many types
        raise DataFileError(f"{path}: not a readable ROOT file ({type(exc).__name__}: {exc})") from None
    try:
        t = f[tree]
    except Exception as exc:  # noqa: BLE001
        keys = ", ".join(k.split(";")[0] for k in f.keys(recursive=False)) or "(none)"
        raise DataFileError(
            f"{path}: no readable tree {tree!r} ({type(exc).__name__}); keys: {keys}"
        ) from None
    if not hasattr(t, "iterate") or not hasattr(t, "num_entries"):
        raise DataFileError(f"{path}: object {tree!r} is not a TTree")
    lut = None
    if PROCESS in t.keys():
        lut = _mapping_lut(f, path)
    return f, t, lut


def _mapping_lut(f, path) -> np.ndarray:
    """file code -> workbench code, from the stored ``process_labels``."""
    if MAPPING_KEY not in [k.split(";")[0] for k in f.keys(recursive=False)]:
        return np.arange(len(PROCESSES), dtype=np.int8)  # assume our own mapping
    labels = str(f[MAPPING_KEY]).split(",")
    unknown = [x for x in labels if x not in PROCESSES]
    if unknown:
        raise FileSchemaError(
            f"{path}: {MAPPING_KEY!r} names unknown process label(s) {unknown}; "
            f"valid: {', '.join(PROCESSES)}"
        )
    return np.array([PROCESSES.index(x) for x in labels], dtype=np.int8)


def root_num_entries(path: str | os.PathLike, tree: str = "tree") -> int:
    return int(_open_tree(path, tree)[1].num_entries)


def _plan(available, columns, derive, process, source):
    if columns is None:
        wanted = list(FEATURES)
        if derive and not all(c in available for c in DERIVED):
            wanted = list(PRIMARY)
        check_columns(available, wanted, source)
        truth = () if process is not None else (LABELS, PROCESS)
        extra = [c for c in (WEIGHTS, *truth) if c in available]
        compute = [c for c in DERIVED if c not in wanted] if derive else []
        return wanted + extra, compute
    cols = [PROCESS if c == "detailed_labels" else c for c in columns]
    unknown = [c for c in cols if c not in SCHEMA_BRANCHES]
    if unknown:
        raise SchemaError(
            f"unknown column(s) requested: {', '.join(unknown)}; valid: the 28 features, "
            f"{WEIGHTS}, {LABELS}, {PROCESS}"
        )
    check_columns(available, cols, source)
    return cols, []


def iter_root(
    path: str | os.PathLike,
    step_size: int = DEFAULT_STEP_SIZE,
    *,
    tree: str = "tree",
    columns: Sequence[str] | None = None,
    entry_start: int | None = None,
    entry_stop: int | None = None,
    max_events: int | None = None,
    derive: bool = False,
    process: str | None = None,
) -> Iterator[Events]:
    """Stream a flat TTree as validated Events of ``step_size`` entries.

    Same column rules as :func:`workbench.data.io.iter_parquet`; ``detailed_labels``
    in ``columns`` means the ``process`` code branch.
    """
    source = str(path)
    f, t, lut = _open_tree(path, tree)
    read, compute = _plan(list(t.keys()), columns, derive, process, source)
    features = tuple(c for c in FEATURES if c in read or c in compute)
    code = process_code(process) if process is not None else None
    start = int(entry_start or 0)
    stop = t.num_entries if entry_stop is None else min(int(entry_stop), t.num_entries)
    if max_events is not None:
        stop = min(stop, start + int(max_events))
    if stop <= start:
        return
    try:
        for chunk in t.iterate(read, step_size=step_size, entry_start=start,
                               entry_stop=stop, library="np"):
            cols = dict(chunk)
            n = len(next(iter(cols.values())))
            if PROCESS in cols:
                raw = cols[PROCESS].astype(np.intp)
                bad = (raw < 0) | (raw >= len(lut))
                if bad.any():
                    raise FileSchemaError(
                        f"{source}: branch {PROCESS!r} has unknown code(s) "
                        f"{sorted(set(raw[bad].tolist()))}; mapping: {', '.join(PROCESSES)}"
                    )
                cols[PROCESS] = lut[raw]
            if code is not None:
                cols[PROCESS] = np.full(n, code, np.int8)
            if compute:
                cols.update(compute_derived({c: cols[c] for c in PRIMARY}))
            yield events_from_arrays(cols, source, first_row=start, features=features)
            start += n
    except (SchemaError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - uproot/zlib/struct errors on bad bytes
        raise DataFileError(
            f"{source}: corrupt or truncated ROOT data near entry {start} "
            f"({type(exc).__name__}: {exc})"
        ) from None
    finally:
        f.close()


def read_root(
    path: str | os.PathLike,
    tree: str = "tree",
    *,
    columns: Sequence[str] | None = None,
    step_size: int = DEFAULT_STEP_SIZE,
    max_events: int | None = None,
    derive: bool = False,
    process: str | None = None,
) -> Events:
    """Read a whole flat TTree (or its first ``max_events`` entries) into Events.

    Chunks are validated as they stream and copied into preallocated arrays.
    """
    f, t, _ = _open_tree(path, tree)
    total = t.num_entries if max_events is None else min(t.num_entries, int(max_events))
    read, compute = _plan(list(t.keys()), columns, derive, process, str(path))
    f.close()
    features = tuple(c for c in FEATURES if c in read or c in compute)
    out: dict[str, np.ndarray] = {}
    filled = 0
    for chunk in iter_root(path, step_size, tree=tree, columns=columns,
                           max_events=max_events, derive=derive, process=process):
        n = len(chunk)
        for name in chunk.fields:
            arr = chunk[name]
            if name not in out:
                out[name] = np.empty(total, dtype=arr.dtype)
            out[name][filled : filled + n] = arr
        filled += n
    if not out:
        names = [c for c in read + compute if c != PROCESS]
        out = {n: np.zeros(0, np.float32) for n in names}
        if PROCESS in read or process is not None:
            out[PROCESS] = np.zeros(0, np.int8)
    elif filled != total:
        raise DataFileError(f"{path}: tree {tree!r} promises {total} entries, read {filled}")
    try:
        return Events.from_columns(out, features=features, validate=False)
    except SchemaError as exc:
        raise FileSchemaError(f"{path}: {exc}") from None
