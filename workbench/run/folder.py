"""The run folder: one writer at a time, and the trained pipeline cached in it.

``RunLock`` holds an exclusive ``flock`` on ``<folder>/.workbench.lock`` while a
run writes the folder; a second run into the same folder fails at once, naming
the holder's pid.  The kernel drops the lock when its process ends, however it
ends (SIGKILL included), so a lock never outlives its run.

The training cache (``training.pkl``) is the trained :class:`workbench.pipeline.Pipeline`
without its training samples (:meth:`~workbench.pipeline.Pipeline.without_training_samples`:
the strategies and the test pool or PE generator), pickled after training behind a
small header with the spec's resume digest;
``--resume`` loads it instead of training again.  A cache of another spec, an
unreadable one or one that does not unpickle is ignored with a message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import time
from pathlib import Path
from typing import IO, Any

from workbench.errors import RunFolderError

LOCK = ".workbench.lock"
TRAINING_CACHE = "training.pkl"
CACHE_FORMAT = 1

log = logging.getLogger("workbench.run")


class RunLock:
    """``with RunLock(folder):`` - exclusive use of an output folder by this process."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self._file: IO[str] | None = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            return self
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunFolderError(
                f"output folder {self.folder} is in use by another workbench run (pid "
                f"{holder}); wait for it to finish, or choose another folder with -o"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.seek(0)
                self._file.truncate()
            self._file.close()  # closing drops the flock
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# -- training cache ------------------------------------------------------------
def _dump(obj: Any, f: IO[bytes]) -> None:
    """Pickle into ``f``; cloudpickle (if installed) for what plain pickle refuses."""
    start = f.tell()
    try:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as first:
        try:
            import cloudpickle
        except ImportError:
            raise first from None
        f.seek(start)
        f.truncate()
        cloudpickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


def save_training(folder: Path, digest: str, pipeline: Any) -> Path | None:
    """Pickle the trained pipeline into the folder atomically; None if it does not pickle."""
    path = Path(folder) / TRAINING_CACHE
    tmp = path.with_name(f".{path.name}.tmp")
    t0 = time.perf_counter()
    try:
        with open(tmp, "wb") as f:
            pickle.dump({"format": CACHE_FORMAT, "resume_digest": digest,
                         "created": time.time()}, f, protocol=pickle.HIGHEST_PROTOCOL)
            _dump(pipeline, f)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        log.warning("training not cached: cannot write %s (%s)", path, exc)
        return None
    except Exception as exc:  # noqa: BLE001 - any strategy object may refuse pickling
        with contextlib.suppress(OSError):
            tmp.unlink()
        log.info("training not cached (the trained pipeline does not pickle: %s: %s)",
                 type(exc).__name__, exc)
        return None
    log.debug("training cached in %s (%.1f MB, %.2f s)", path, size / 1e6,
              time.perf_counter() - t0)
    return path


def load_training(folder: Path, digest: str) -> Any | None:
    """The cached pipeline of this spec, or None (with a message) if there is none usable."""
    path = Path(folder) / TRAINING_CACHE
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            header = pickle.load(f)
            if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT:
                log.warning("ignoring training cache %s (unknown format); training again", path)
                return None
            if header.get("resume_digest") != digest:
                log.warning("ignoring stale training cache %s (written for another spec, "
                            "digest %s != %s); training again", path,
                            header.get("resume_digest"), digest)
                return None
            pipeline = pickle.load(f)
    except Exception as exc:  # noqa: BLE001 - a damaged or incompatible pickle
        log.warning("ignoring training cache %s (it does not load: %s: %s); training again",
                    path, type(exc).__name__, exc)
        return None
    log.info("training loaded from %s (no retraining)", path)
    return pipeline


__all__ = ["LOCK", "TRAINING_CACHE", "RunLock", "load_training", "save_training"]
