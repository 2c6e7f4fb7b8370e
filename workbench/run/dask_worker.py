"""What every worker of a run's local dask cluster does first (imported only with dask).

:class:`WorkerGuard` is registered on the local cluster's client: on each worker,
now and after a restart, it makes the worker die with its parent (the workers are
children of the ``workbench run`` process) and ignore Ctrl-C, which the terminal
sends to the whole process group: the parent handles it and closes the cluster.
"""

from __future__ import annotations

import os

from distributed.diagnostics.plugin import WorkerPlugin

from workbench.run.workers import die_with_parent, ignore_interrupts, limit_threads


class WorkerGuard(WorkerPlugin):
    name = "workbench-worker-guard"

    def setup(self, worker) -> None:
        die_with_parent(os.getppid())
        ignore_interrupts()
        limit_threads()


__all__ = ["WorkerGuard"]
