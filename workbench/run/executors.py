"""Where pseudo-experiments run: in process, a local process pool, or dask.distributed.

Pseudo-experiments are independent tasks whose every draw comes from the task's
own seed, so the records do not depend on the executor or on the order in which
tasks finish; the runner sorts them back into plan order.

Faults: pool and local-cluster workers die with the process that started them
(``PR_SET_PDEATHSIG`` on Linux, else a thread that watches the parent), ignore
Ctrl-C (the parent handles it and stops them), and a pool that loses a worker,
a cluster that loses its workers or a scheduler out of reach raise
:class:`workbench.errors.ExecutorError` with one line saying what happened.  A
remote scheduler is contacted when the executor is opened, before any training.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from workbench.errors import ExecutorError
from workbench.pipeline import Pipeline, evaluate
from workbench.run.workers import die_with_parent, ignore_interrupts, limit_threads
from workbench.spec import EXECUTORS

Outcome = tuple[int, dict[str, Any], dict[str, float]]

log = logging.getLogger("workbench.run")

CONNECT_TIMEOUT_S = 5.0
"""How long a remote dask scheduler is tried before the run gives up (before training)."""
DASK_RESUBMITS = 3
"""How often the unfinished PEs are resubmitted after a dask cluster lost its workers."""

_PIPELINE: Pipeline | None = None  # set in the parent before forking / in each dask worker


def _error_text(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", None)
    text = f"{type(exc).__name__}: {exc}"
    return f"{text} ({'; '.join(notes)})" if notes else text


def _evaluate_safely(pipeline: Pipeline, task: dict[str, Any]
                     ) -> tuple[dict[str, Any], dict[str, float]]:
    try:
        return evaluate(pipeline, task)
    except (ValueError, RuntimeError, FloatingPointError, ArithmeticError) as exc:
        return dict(task, error=_error_text(exc)), {
            "sample": float("nan"), "inference": float("nan")}


def _pool_initialiser(parent: int) -> None:
    die_with_parent(parent)
    ignore_interrupts()
    limit_threads()


def _forked_task(index_task):
    index, task = index_task
    record, timing = _evaluate_safely(_PIPELINE, task)
    return index, record, timing


def _dask_task(pipeline, index, task):
    limit_threads()
    record, timing = _evaluate_safely(pipeline, task)
    return index, record, timing


class Executor:
    """An open executor: ``with Executor("dask", scheduler=...) as ex: ex.map(pipeline, tasks)``.

    Opening it checks what can be checked before the (long) training: the
    executor's name, that dask is installed, and that a remote scheduler
    answers within ``connect_timeout`` seconds.
    """

    def __init__(self, executor: str = "inline", workers: int | None = None,
                 scheduler: str | None = None, *,
                 connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        if executor not in EXECUTORS:
            raise ExecutorError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
        if scheduler and executor != "dask":
            raise ExecutorError(
                f"a dask scheduler ({scheduler}) was given but the executor is {executor!r}: "
                "add --executor dask (or drop --scheduler)"
            )
        if workers is not None and workers < 0:
            raise ExecutorError(f"workers={workers} must be >= 0 (0: one per CPU core)")
        self.executor = executor
        self.workers = workers or None
        self.scheduler = scheduler
        self.connect_timeout = connect_timeout
        self._client: Any = None

    # -- lifetime ----------------------------------------------------------------
    def __enter__(self) -> Executor:
        if self.executor == "dask":
            _import_dask()
            if self.scheduler:
                self._client = _connect(self.scheduler, self.connect_timeout)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    # -- running -----------------------------------------------------------------
    def map(self, pipeline: Pipeline, tasks: list[tuple[int, dict[str, Any]]]
            ) -> Iterator[Outcome]:
        """Yield ``(index, record, timing)`` for each ``(index, task)`` as it finishes."""
        if not tasks:
            return
        if self.executor == "inline":
            for index, task in tasks:
                record, timing = _evaluate_safely(pipeline, task)
                yield index, record, timing
        elif self.executor == "processes":
            yield from _run_processes(pipeline, tasks, self.workers or os.cpu_count() or 1)
        elif self._client is not None:
            yield from _run_dask(self._client, pipeline, tasks)
        else:
            yield from _run_local_dask(pipeline, tasks, self.workers or os.cpu_count() or 1)


def execute(
    pipeline: Pipeline,
    tasks: list[tuple[int, dict[str, Any]]],
    executor: str = "inline",
    workers: int | None = None,
    scheduler: str | None = None,
) -> Iterator[Outcome]:
    """Yield ``(index, record, timing)`` for each ``(index, task)`` as it finishes."""
    with Executor(executor, workers, scheduler) as ex:
        yield from ex.map(pipeline, tasks)


# -- processes ---------------------------------------------------------------------
def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (not after their PE)."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        with contextlib.suppress(Exception):
            p.kill()
    for p in processes:
        with contextlib.suppress(Exception):
            p.join(5)


def _run_processes(pipeline, tasks, workers: int) -> Iterator[Outcome]:
    # fork shares the trained pipeline (pool events, models) copy-on-write: no pickling.
    global _PIPELINE
    _PIPELINE = pipeline
    ctx = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                               initializer=_pool_initialiser, initargs=(os.getpid(),))
    clean = False
    try:
        futures = [pool.submit(_forked_task, item) for item in tasks]
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except BrokenProcessPool:
                raise ExecutorError(
                    "a worker process of the 'processes' executor died (killed, or out of "
                    "memory?); the finished PEs are saved: continue with --resume, perhaps "
                    "with fewer --workers"
                ) from None
            yield outcome
        clean = True
    finally:
        if clean:
            pool.shutdown(wait=True)
        else:  # interrupted, failed or abandoned: do not wait for PEs in flight
            _stop_pool(pool)
        _PIPELINE = None


# -- dask --------------------------------------------------------------------------
def _import_dask():
    try:
        import distributed
    except ImportError:  # pragma: no cover - depends on the environment
        raise ExecutorError(
            "the dask executor needs dask.distributed: pip install 'fair-workbench[dask]'"
        ) from None
    return distributed


def _connect(scheduler: str, timeout: float):
    distributed = _import_dask()
    t0 = time.perf_counter()
    try:
        return distributed.Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ExecutorError(
            f"cannot reach the dask scheduler {scheduler} (gave up after "
            f"{time.perf_counter() - t0:.0f} s: {type(exc).__name__}); start it "
            f"(dask scheduler) or fix --scheduler / execution.scheduler"
        ) from None


def _guard_workers(client) -> None:
    """Each worker of a local cluster dies with its parent and ignores Ctrl-C (a remote
    cluster's workers are someone else's processes: they are left as they are)."""
    from workbench.run.dask_worker import WorkerGuard

    try:
        client.register_plugin(WorkerGuard())
    except Exception as exc:  # noqa: BLE001 - a guard only; the run goes on without it
        log.debug("dask worker guard not registered: %s: %s", type(exc).__name__, exc)


def _run_local_dask(pipeline, tasks, workers: int) -> Iterator[Outcome]:
    distributed = _import_dask()
    cluster = distributed.LocalCluster(n_workers=min(workers, len(tasks)), threads_per_worker=1,
                                       processes=True, dashboard_address=None)
    clean = False
    dask_log = logging.getLogger("distributed")
    level = dask_log.level
    try:
        client = distributed.Client(cluster)
        try:
            _guard_workers(client)
            yield from _run_dask(client, pipeline, tasks)
            clean = True
        finally:
            if not clean:  # interrupted or failed: the workers' cancelled PEs are no news
                dask_log.setLevel(logging.ERROR)
            with contextlib.suppress(Exception):
                client.close()
    finally:
        with contextlib.suppress(Exception):
            cluster.close()
        dask_log.setLevel(level)


def _lost(exc: BaseException) -> bool:
    """A task that failed because its workers (or the data on them) are gone."""
    import asyncio
    import concurrent.futures

    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    lost: tuple[type[BaseException], ...] = (
        KilledWorker, CommClosedError, asyncio.CancelledError,
        concurrent.futures.CancelledError, OSError)
    try:
        from distributed.client import FutureCancelledError

        lost = (*lost, FutureCancelledError)
    except ImportError:  # pragma: no cover - older distributed
        pass
    return isinstance(exc, lost)


def _run_dask(client, pipeline, tasks) -> Iterator[Outcome]:
    """Broadcast the pipeline once, submit every PE; resubmit what a lost cluster dropped."""
    from distributed import as_completed as dask_completed

    pending = dict(tasks)
    for attempt in range(DASK_RESUBMITS + 1):
        if attempt:
            log.warning("the dask cluster lost its workers; resubmitting %d unfinished "
                        "pseudo-experiments (attempt %d of %d)", len(pending), attempt,
                        DASK_RESUBMITS)
            try:
                client.wait_for_workers(1, timeout=60)
            except (TimeoutError, OSError):
                break
        try:
            remote = client.scatter(pipeline, broadcast=True)
        except (OSError, TimeoutError, RuntimeError) as exc:
            if attempt == DASK_RESUBMITS:
                raise ExecutorError(f"cannot send the trained pipeline to the dask workers "
                                    f"({type(exc).__name__}: {exc})") from None
            continue
        futures = {client.submit(_dask_task, remote, index, task, pure=False): index
                   for index, task in sorted(pending.items())}
        failed = None
        try:
            for future in dask_completed(list(futures)):
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - classified just below
                    if not _lost(exc):
                        raise
                    failed = exc
                    continue
                pending.pop(outcome[0], None)
                yield outcome
        finally:
            for future in futures:
                future.cancel()
        if not pending:
            return
        if failed is None:  # pragma: no cover - defensive
            break
    raise ExecutorError(
        f"the dask cluster lost its workers and {len(pending)} pseudo-experiments could not "
        "be run; the finished PEs are saved: check the workers (memory?) and continue "
        "with --resume"
    )


__all__ = ["CONNECT_TIMEOUT_S", "Executor", "die_with_parent", "execute"]
