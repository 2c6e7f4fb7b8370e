"""What every worker of a run's local dask cluster does first (imported only with dask).

:class:`WorkerGuard` is registered on the local cluster's client: on each worker,
now and after a restart, it makes the worker die with its parent (the workers are
children of the ``workbench run`` process) and ignore Ctrl-C, which the terminal
sends to the whole process group: the parent handles it and closes the cluster.
"""

from __future__ import annotations

import contextlib
import os
import signal

from distributed.diagnostics.plugin import WorkerPlugin


class WorkerGuard(WorkerPlugin):
    name = "workbench-worker-guard"

    def setup(self, worker) -> None:
        from workbench.run.executors import _limit_threads, die_with_parent

        die_with_parent(os.getppid())
        with contextlib.suppress(ValueError):  # only possible in the main thread
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        _limit_threads()


__all__ = ["WorkerGuard"]
