"""Generator plugins that sample events from files: ``parquet`` and ``root``.

Selection streams, so it works on the full 16 GB / 280M-row public file:

1. *Census* (skipped when the metadata JSON has per-process rows): one pass
   over only ``detailed_labels`` and ``weights`` records, per row group / entry
   range, how many rows of each process it holds and their sum of weights.
2. *Draw*: for each process, ``k`` of its ``N`` rows are drawn uniformly
   without replacement as sorted ranks (the i-th row of that process in file
   order).  To never allocate ``N`` integers the rank space is cut into blocks
   of 2^20: a multivariate hypergeometric draw splits ``k`` over the blocks,
   then ``k_b`` distinct ranks are drawn inside each block.  This is exactly
   uniform and depends only on the seed and the per-process counts (not on
   batch sizes or the file's row grouping).
3. *Read*: a second pass keeps the rows whose running per-process rank was
   drawn; row groups holding no drawn rank are not read at all (the census
   tells which), so a small sample from a huge file reads little of it.

Memory is one batch plus the selected rows plus ``k`` int64 ranks.  Weights are
rescaled per process (``reweight``): ``"count"`` (default) multiplies by
``N_process / k_process``, so each event stands for the rows it represents and
per-process sums equal the file's in expectation (exactly when all rows are
taken); ``"sum"`` makes them equal the file's sums exactly; ``"expected"``
makes them equal :data:`workbench.data.schema.EXPECTED_EVENTS` exactly; ``"none"``
keeps the stored weights.  ``"sum"``/``"expected"`` need the selected rows'
sum first, which ``iter_chunks`` gets by an extra pass over the two
bookkeeping columns of the needed row groups.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np

from workbench import EXPECTED_EVENTS, PROCESSES, Events, hookimpl, resolve_params
from workbench.data.events import PROCESS, WEIGHTS
from workbench.data.io import iter_parquet, iter_root, parquet_row_groups, root_num_entries
from workbench.data.io.metadata import DataFileError, find_metadata, read_metadata

REWEIGHT_MODES = ("count", "sum", "expected", "none")
_BLOCK = 1 << 20
_NP = len(PROCESSES)


def sample_ranks(rng: np.random.Generator, n: int, k: int, block: int = _BLOCK) -> np.ndarray:
    """``k`` distinct sorted integers drawn uniformly from ``range(n)`` in O(k + block) memory."""
    if not 0 <= k <= n:
        raise ValueError(f"cannot draw {k} of {n}")
    if k == n:
        return np.arange(n, dtype=np.int64)
    if n <= block:
        return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
    sizes = np.full(n // block, block, dtype=np.int64)
    if n % block:
        sizes = np.append(sizes, n % block)
    per_block = rng.multivariate_hypergeometric(sizes, k, method="marginals")
    out = np.empty(k, dtype=np.int64)
    pos = 0
    for b, (size, kb) in enumerate(zip(sizes.tolist(), per_block.tolist())):
        if kb:
            out[pos : pos + kb] = b * block + np.sort(rng.choice(size, size=kb, replace=False))
            pos += kb
    return out


def _take(ev: Events, idx: np.ndarray) -> Events:
    """Rows ``idx`` as compact new arrays (awkward's ``ev[idx]`` would be a lazy
    view that keeps the whole batch alive)."""
    return Events(ak.Array({name: col[idx] for name, col in ev.columns().items()}))


@dataclass
class FileSourceParams:
    """Parameters of the file sources (the "parquet" generator's)."""

    path: str
    """The data file."""
    metadata: str | None = None
    """The ``*_metadata.json`` (default: the file's own ``<stem>_metadata.json``, if any)."""
    process: str | None = None
    """Label every row with this process (single-process files without labels)."""
    reweight: Literal["count", "sum", "expected", "none"] = "count"
    """How weights are rescaled per process (see the module doc)."""
    batch_size: int = 1 << 18
    """Rows read per batch."""
    derive: bool = True
    """Compute DER_ columns a file lacks."""
    ignore_metadata: bool = False
    """Do without any metadata JSON (e.g. a stale one): count the rows instead."""

    def __post_init__(self) -> None:
        if self.reweight not in REWEIGHT_MODES:
            raise ValueError(f"reweight={self.reweight!r}; valid: {', '.join(REWEIGHT_MODES)}")
        if self.process is not None and self.process not in PROCESSES:
            raise ValueError(f"process={self.process!r}; valid: {', '.join(PROCESSES)}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


@dataclass
class RootSourceParams(FileSourceParams):
    """Parameters of the "root" generator: the file sources' plus the tree's."""

    tree: str = "tree"
    """The TTree's name."""
    unit_size: int = 1 << 20
    """Entries per unit (the role of a parquet row group)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.unit_size <= 0:
            raise ValueError(f"unit_size must be positive, got {self.unit_size}")


def _file_params(cls, params, overrides: dict[str, Any], where: str):
    """``Source(path)`` as well as ``Source(P(...))`` and ``Source(path=...)``."""
    if isinstance(params, (str, os.PathLike)):
        overrides = {"path": params, **overrides}
        params = None
    if isinstance(overrides.get("path"), os.PathLike):
        overrides = {**overrides, "path": os.fspath(overrides["path"])}
    return resolve_params(cls, params, overrides, where)


class _FileSource:
    """Shared sampling logic; subclasses say how to read a unit (row group / entry range)."""

    _truth_column = "detailed_labels"

    def __init__(self, params: FileSourceParams) -> None:
        self.params = params
        self.path = str(params.path)
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"{self.name} source: file {self.path} does not exist")
        self.process = params.process
        self.reweight = params.reweight
        self.batch_size = int(params.batch_size)
        self.derive = params.derive
        metadata = params.metadata
        tree = params.tree if isinstance(params, RootSourceParams) else "tree"
        # the file's own metadata only, checked against the file (a stale one is an error)
        meta_path = None if params.ignore_metadata else (
            metadata if metadata is not None else find_metadata(self.path, tree=tree))
        self.metadata = (read_metadata(meta_path, data_path=self.path, tree=tree)
                         if meta_path is not None else None)
        self.metadata_path = meta_path
        self._census_cache: tuple | None = None

    # -- subclass hooks --------------------------------------------------------
    def _unit_sizes(self) -> list[int]:
        raise NotImplementedError

    def _read_unit(self, unit: int, columns) -> Iterator[Events]:
        raise NotImplementedError

    def _bookkeeping(self) -> list[str]:
        """The cheap columns a census or a sum pre-pass reads."""
        return [WEIGHTS] if self.process is not None else [self._truth_column, WEIGHTS]

    # -- census ----------------------------------------------------------------
    def _census(self) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """(rows per unit and process or None, rows per process, sum of weights per process)."""
        if self._census_cache is not None:
            return self._census_cache
        sizes = self._unit_sizes()
        total = int(sum(sizes))
        meta = self.metadata
        if meta is not None and meta.total_rows is not None and meta.total_rows != total:
            raise DataFileError(
                f"metadata file {self.metadata_path} says total_rows={meta.total_rows} but "
                f"{self.path} has {total} rows (stale metadata?)"
            )
        if self.process is not None:
            code = PROCESSES.index(self.process)
            per_unit = np.zeros((len(sizes), _NP), dtype=np.int64)
            per_unit[:, code] = sizes
            sums = np.zeros(_NP)
            if self.reweight == "sum":
                sums[code] = sum(float(e[WEIGHTS].sum()) for u in range(len(sizes))
                                 for e in self._read_unit(u, [WEIGHTS]))
            self._census_cache = (per_unit, per_unit.sum(0), sums)
            return self._census_cache
        if meta is not None and meta.rows_per_process and (
            self.reweight != "sum" or meta.sum_weights_per_process
        ):
            rows = np.array([meta.rows_per_process.get(p, 0) for p in PROCESSES], np.int64)
            if rows.sum() != total:
                raise DataFileError(
                    f"metadata file {self.metadata_path}: rows_per_process add up to "
                    f"{int(rows.sum())}, but {self.path} has {total} rows"
                )
            sums = np.array([meta.sum_weights_per_process.get(p, 0.0) for p in PROCESSES])
            self._census_cache = (None, rows, sums)
            return self._census_cache
        per_unit = np.zeros((len(sizes), _NP), dtype=np.int64)
        sums = np.zeros(_NP)
        for u in range(len(sizes)):
            for ev in self._read_unit(u, self._bookkeeping()):
                codes = ev[PROCESS]
                per_unit[u] += np.bincount(codes, minlength=_NP)
                sums += np.bincount(codes, weights=ev[WEIGHTS], minlength=_NP)
        self._census_cache = (per_unit, per_unit.sum(0), sums)
        return self._census_cache

    # -- selection -------------------------------------------------------------
    def _draw(self, counts: Mapping[str, int], rng: np.random.Generator):
        unknown = [p for p in counts if p not in PROCESSES]
        if unknown:
            raise ValueError(
                f"{self.name} source: unknown process(es) {unknown} in counts; "
                f"valid: {', '.join(PROCESSES)}"
            )
        per_unit, rows, sums = self._census()
        ranks: list[np.ndarray | None] = []  # None: take all rows of that process
        for i, p in enumerate(PROCESSES):
            k = int(counts.get(p, 0))
            n = int(rows[i])
            if k == -1 or k == n:
                ranks.append(None if n else np.zeros(0, np.int64))
                continue
            if k < 0:
                raise ValueError(f"counts[{p!r}]={k}; use -1 for all events or a count >= 0")
            if k > n:
                raise ValueError(
                    f"{self.name} source {self.path}: counts[{p!r}]={k} but the file "
                    f"has only {n} {p} events"
                )
            ranks.append(sample_ranks(rng, n, k))
        # which units hold a drawn rank (all units without a per-unit census)
        n_units = len(self._unit_sizes())
        if per_unit is None:
            needed = [u for u in range(n_units)] if any(
                r is None or len(r) for r in ranks) else []
        else:
            base = np.vstack([np.zeros((1, _NP), np.int64), np.cumsum(per_unit, 0)])
            hit = np.zeros(n_units, bool)
            for i, r in enumerate(ranks):
                if r is None:
                    hit |= per_unit[:, i] > 0
                elif len(r):
                    lo = np.searchsorted(r, base[:-1, i])
                    hi = np.searchsorted(r, base[1:, i])
                    hit |= hi > lo
            needed = np.flatnonzero(hit).tolist()
            starts = base[:-1]
        selected = np.array([int(rows[i]) if r is None else len(r)
                             for i, r in enumerate(ranks)])
        plan = {
            "ranks": ranks, "needed": needed, "rows": rows, "sums": sums,
            "selected": selected,
            "starts": None if per_unit is None else starts,
        }
        return plan

    def _iter_selected(self, plan, columns=None) -> Iterator[Events]:
        """Stream the drawn rows (file order) batch by batch, unscaled."""
        ranks = plan["ranks"]
        running = np.zeros(_NP, np.int64)
        for u in plan["needed"]:
            if plan["starts"] is not None:
                running = plan["starts"][u].copy()
            for ev in self._read_unit(u, columns):
                codes = ev[PROCESS]
                keep = []
                for i, r in enumerate(ranks):
                    rows_i = np.flatnonzero(codes == i)
                    m = len(rows_i)
                    if not m:
                        continue
                    if r is None:
                        keep.append(rows_i)
                    elif len(r):
                        lo, hi = np.searchsorted(r, [running[i], running[i] + m])
                        if hi > lo:
                            keep.append(rows_i[r[lo:hi] - running[i]])
                    running[i] += m
                if keep:
                    idx = np.sort(np.concatenate(keep))
                    yield ev if len(idx) == len(ev) else _take(ev, idx)

    def _factors(self, plan, selected_sums: np.ndarray | None) -> np.ndarray:
        sel = plan["selected"].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.reweight == "none":
                f = np.ones(_NP)
            elif self.reweight == "count":
                f = plan["rows"] / sel
            elif self.reweight == "sum":
                f = plan["sums"] / selected_sums
            else:
                expected = np.array([EXPECTED_EVENTS[p] for p in PROCESSES])
                f = expected / selected_sums
        return np.where(np.isfinite(f), f, 1.0)

    @staticmethod
    def _scaled(ev: Events, factors: np.ndarray) -> Events:
        return ev.with_columns(weights=ev[WEIGHTS] * factors[ev[PROCESS]])

    # -- Generator protocol ----------------------------------------------------
    def generate(self, counts: Mapping[str, int], seed: int) -> Events:
        """``counts[process]`` uniformly drawn events of each process (-1: all; absent: 0),
        shuffled, with per-process weights rescaled (see module doc)."""
        rng = np.random.default_rng(seed)
        plan = self._draw(counts, rng)
        parts = list(self._iter_selected(plan))
        if not parts:
            return self._empty()
        ev = Events.concatenate(parts) if len(parts) > 1 else parts[0]
        sel_sums = np.bincount(ev[PROCESS], weights=ev[WEIGHTS], minlength=_NP)
        ev = self._scaled(ev, self._factors(plan, sel_sums))
        return _take(ev, rng.permutation(len(ev)))

    def iter_chunks(self, counts: Mapping[str, int], seed: int,
                    chunk_size: int) -> Iterator[Events]:
        """The same selection as :meth:`generate` in file order, ``chunk_size`` events
        per chunk (the last may be shorter); memory stays at about one chunk."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        rng = np.random.default_rng(seed)
        plan = self._draw(counts, rng)
        sel_sums = None
        if self.reweight in ("sum", "expected"):
            sel_sums = np.zeros(_NP)
            for ev in self._iter_selected(plan, self._bookkeeping()):
                sel_sums += np.bincount(ev[PROCESS], weights=ev[WEIGHTS], minlength=_NP)
        factors = self._factors(plan, sel_sums)
        buffer: list[Events] = []
        held = 0
        for ev in self._iter_selected(plan):
            buffer.append(ev)
            held += len(ev)
            while held >= chunk_size:
                joined = Events.concatenate(buffer) if len(buffer) > 1 else buffer[0]
                yield self._scaled(joined[:chunk_size], factors)
                rest = joined[chunk_size:]
                buffer, held = ([rest], len(rest)) if len(rest) else ([], 0)
        if held:
            joined = Events.concatenate(buffer) if len(buffer) > 1 else buffer[0]
            yield self._scaled(joined, factors)

    def _empty(self) -> Events:
        for u in range(len(self._unit_sizes())):
            for ev in self._read_unit(u, None):
                return ev[:0]
        raise DataFileError(f"{self.path} holds no events")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} reweight={self.reweight}>"


class ParquetSource(_FileSource):
    """Events sampled from a parquet file in the public dataset's layout.

    ``ParquetSource(path, reweight="sum")`` or ``ParquetSource(FileSourceParams(path))``;
    ``metadata``: the ``*_metadata.json`` (default: found next to the file);
    ``process``: label every row (single-process files without
    ``detailed_labels``); ``derive``: compute DER_ columns a file lacks;
    ``reweight``: count | sum | expected | none (see module doc).
    """

    name = "parquet"

    def __init__(self, params: FileSourceParams | str | os.PathLike | None = None, /,
                 **overrides: Any) -> None:
        super().__init__(_file_params(FileSourceParams, params, overrides, "parquet"))
        self._sizes = parquet_row_groups(self.path)

    def _unit_sizes(self) -> list[int]:
        return self._sizes

    def _read_unit(self, unit: int, columns) -> Iterator[Events]:
        return iter_parquet(self.path, self.batch_size, columns=columns,
                            row_groups=[unit], derive=self.derive if columns is None else False,
                            process=self.process)


class RootSource(_FileSource):
    """Events sampled from a flat ROOT TTree written like :func:`workbench.data.io.write_root`.

    Entry ranges of ``unit_size`` entries play the role of row groups.
    """

    name = "root"
    _truth_column = PROCESS

    def __init__(self, params: RootSourceParams | str | os.PathLike | None = None, /,
                 **overrides: Any) -> None:
        p = _file_params(RootSourceParams, params, overrides, "root")
        self.tree = p.tree
        super().__init__(p)
        n = root_num_entries(self.path, p.tree)
        unit_size = p.unit_size
        self._sizes = [min(unit_size, n - s) for s in range(0, n, unit_size)]

    def _unit_sizes(self) -> list[int]:
        return self._sizes

    def _read_unit(self, unit: int, columns) -> Iterator[Events]:
        start = sum(self._sizes[:unit])
        return iter_root(self.path, self.batch_size, tree=self.tree, columns=columns,
                         entry_start=start, entry_stop=start + self._sizes[unit],
                         derive=self.derive if columns is None else False,
                         process=self.process)


@hookimpl
def register_generators(register):
    register("parquet", ParquetSource, params=FileSourceParams)
    register("root", RootSource, params=RootSourceParams)


__all__ = ["FileSourceParams", "ParquetSource", "RootSource", "RootSourceParams", "sample_ranks",
           "register_generators"]
