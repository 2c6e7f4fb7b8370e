"""What a worker process of a run does first: die with its parent, leave Ctrl-C to the
parent, one BLAS/OpenMP thread (the pool provides the parallelism)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time


def limit_threads() -> None:
    """One BLAS/OpenMP thread per worker process: the pool provides the parallelism."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - optional
        pass


_PR_SET_PDEATHSIG = 1
_GUARDED = False


def die_with_parent(parent: int | None = None) -> None:
    """Make this (worker) process end when its parent does, even by SIGKILL.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere a daemon thread polls
    ``os.getppid()``.  ``parent``: the pid the worker was started by; if it is
    already gone (it died before this ran), the worker exits at once.
    Idempotent.
    """
    global _GUARDED
    if _GUARDED:
        return
    _GUARDED = True
    parent = os.getppid() if parent is None else parent
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):  # pragma: no cover - exotic libc
            armed = False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:  # pragma: no cover - non-Linux
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="workbench-parent-watch", daemon=True).start()


def ignore_interrupts() -> None:
    """Ctrl-C goes to the whole process group; the parent alone handles it."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)


__all__ = ["die_with_parent", "ignore_interrupts", "limit_threads"]
