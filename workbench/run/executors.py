"""Where pseudo-experiments run: in process, a local process pool, or dask.distributed.

Pseudo-experiments are independent tasks whose every draw comes from the task's
own seed, so the records do not depend on the executor or on the order in which
tasks finish; the runner sorts them back into plan order.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from workbench.pipeline import Pipeline, evaluate
from workbench.spec import EXECUTORS

Outcome = tuple[int, dict[str, Any], dict[str, float]]

_PIPELINE: Pipeline | None = None  # set in the parent before forking / in each dask worker


def _evaluate_safely(pipeline: Pipeline, task: dict[str, Any]
                     ) -> tuple[dict[str, Any], dict[str, float]]:
    try:
        return evaluate(pipeline, task)
    except (ValueError, RuntimeError, FloatingPointError, ArithmeticError) as exc:
        return dict(task, error=f"{type(exc).__name__}: {exc}"), {
            "sample": float("nan"), "inference": float("nan")}


def _limit_threads() -> None:
    """One BLAS/OpenMP thread per worker process: the pool provides the parallelism."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - optional
        pass


def _forked_task(index_task):
    index, task = index_task
    record, timing = _evaluate_safely(_PIPELINE, task)
    return index, record, timing


def _pool_initialiser():
    _limit_threads()


def _dask_task(pipeline, index, task):
    _limit_threads()
    record, timing = _evaluate_safely(pipeline, task)
    return index, record, timing


def execute(
    pipeline: Pipeline,
    tasks: list[tuple[int, dict[str, Any]]],
    executor: str = "inline",
    workers: int | None = None,
    scheduler: str | None = None,
) -> Iterator[Outcome]:
    """Yield ``(index, record, timing)`` for each ``(index, task)`` as it finishes."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if executor == "inline":
        for index, task in tasks:
            record, timing = _evaluate_safely(pipeline, task)
            yield index, record, timing
    elif executor == "processes":
        yield from _run_processes(pipeline, tasks, workers or os.cpu_count() or 1)
    else:
        yield from _run_dask(pipeline, tasks, workers, scheduler)


def _run_processes(pipeline, tasks, workers: int) -> Iterator[Outcome]:
    # fork shares the trained pipeline (pool events, models) copy-on-write: no pickling.
    global _PIPELINE
    _PIPELINE = pipeline
    ctx = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                 initializer=_pool_initialiser) as pool:
            futures = [pool.submit(_forked_task, item) for item in tasks]
            for future in as_completed(futures):
                yield future.result()
    finally:
        _PIPELINE = None


def _run_dask(pipeline, tasks, workers: int | None, scheduler: str | None) -> Iterator[Outcome]:
    try:
        from distributed import Client, LocalCluster
        from distributed import as_completed as dask_completed
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the dask executor needs dask.distributed: pip install 'fair-workbench[dask]'"
        ) from exc
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        remote = client.scatter(pipeline, broadcast=True)
        futures = [client.submit(_dask_task, remote, index, task, pure=False)
                   for index, task in tasks]
        for future in dask_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

