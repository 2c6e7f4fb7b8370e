"""Template histograms filled from event streams: files larger than memory, or a cluster.

Filling is a sum over events, so a template is the sum of the histograms of
its chunks.  :func:`fill_histograms` streams chunks through the systematics,
the classifier and ``hist`` (Weight storage) keeping one chunk in memory;
:func:`fill_histograms_dask` runs the *same* per-chunk function on the row
groups of a parquet file as dask tasks and adds the results, so a laptop and a
cluster give identical histograms.  The soft-MET smearing seed of a chunk is
derived from the run seed and the chunk's index, which makes results
independent of the executor (they do depend on how the file is chunked).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from workbench.data.events import Events
from workbench.data.schema import PROCESSES
from workbench.seeds import derive_seed
from workbench.systematics.nuisance import NuisanceParameters

ScoreFn = Callable[[Events], np.ndarray]


def empty_histogram(edges: Sequence[float]):
    """Score x process histogram with Weight storage (sum of w and of w^2)."""
    import hist

    return hist.Hist(
        hist.axis.Variable(np.asarray(edges, float), name="score", flow=False),
        hist.axis.IntCategory(list(range(len(PROCESSES))), name="process"),
        storage=hist.storage.Weight(),
    )


def fill_chunk(
    chunk: Events,
    index: int,
    score: ScoreFn,
    variations: Mapping[str, NuisanceParameters],
    edges: Sequence[float],
    seed: int,
) -> dict:
    """Histograms of one chunk for every variation (the unit of work on a cluster)."""
    from workbench.systematics.engine import apply_systematics

    edge_array = np.asarray(edges, float)
    lo, hi = edge_array[0], edge_array[-1]
    out = {}
    chunk_seed = derive_seed(seed, "chunk", index)
    for name, nps in variations.items():
        shifted = apply_systematics(chunk, nps, chunk_seed)
        h = empty_histogram(edges)
        if len(shifted):
            s = np.clip(np.asarray(score(shifted), dtype=np.float64), lo, np.nextafter(hi, lo))
            h.fill(score=s, process=shifted.process, weight=shifted.weights)
        out[name] = h
    return out


def _add(total: dict | None, part: dict) -> dict:
    if total is None:
        return part
    return {name: total[name] + part[name] for name in total}


def fill_histograms(
    chunks: Iterable[Events],
    score: ScoreFn,
    variations: Mapping[str, NuisanceParameters],
    edges: Sequence[float],
    seed: int,
    weight_scale: float = 1.0,
) -> dict:
    """Stream ``chunks`` and return ``{variation: hist}``; memory is one chunk.

    ``weight_scale`` multiplies every weight (e.g. to turn a file's total into
    one pseudo-experiment's expected yield).
    """
    total = None
    for index, chunk in enumerate(chunks):
        if weight_scale != 1.0:
            chunk = chunk.with_columns(weights=chunk.weights * weight_scale)
        total = _add(total, fill_chunk(chunk, index, score, variations, edges, seed))
    if total is None:
        raise ValueError("no events to fill: the stream was empty")
    return total


def _fill_row_group(path, row_group, score, variations, edges, seed, weight_scale):
    from workbench.data.io.parquet import iter_parquet

    chunks = list(iter_parquet(path, batch_size=1 << 40, row_groups=[row_group]))
    chunk = chunks[0] if len(chunks) == 1 else Events.concatenate(chunks)
    if weight_scale != 1.0:
        chunk = chunk.with_columns(weights=chunk.weights * weight_scale)
    return fill_chunk(chunk, row_group, score, variations, edges, seed)


def iter_row_groups(path: str | os.PathLike) -> Iterable[Events]:
    """One :class:`Events` per parquet row group (the chunking the dask path uses)."""
    from workbench.data.io.parquet import iter_parquet, parquet_row_groups

    for i in range(len(parquet_row_groups(path))):
        parts = list(iter_parquet(path, batch_size=1 << 40, row_groups=[i]))
        yield parts[0] if len(parts) == 1 else Events.concatenate(parts)


def fill_histograms_dask(
    path: str | os.PathLike,
    score: ScoreFn,
    variations: Mapping[str, NuisanceParameters],
    edges: Sequence[float],
    seed: int,
    client=None,
    weight_scale: float = 1.0,
) -> dict:
    """:func:`fill_histograms` over a parquet file's row groups as dask tasks.

    With ``client=None`` the dask threaded scheduler runs locally; pass a
    ``distributed.Client`` (LocalCluster or a scheduler address) to use workers.
    """
    import dask

    from workbench.data.io.parquet import parquet_row_groups

    n = len(parquet_row_groups(path))
    tasks = [dask.delayed(_fill_row_group)(str(path), i, score, dict(variations),
                                           list(edges), seed, weight_scale) for i in range(n)]
    # pairwise tree reduction keeps the scheduler's memory flat for many row groups
    while len(tasks) > 1:
        tasks = [dask.delayed(_add)(tasks[i], tasks[i + 1]) if i + 1 < len(tasks) else tasks[i]
                 for i in range(0, len(tasks), 2)]
    if client is not None:
        return client.compute(tasks[0]).result()
    return dask.compute(tasks[0], scheduler="threads")[0]
