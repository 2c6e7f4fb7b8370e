"""A submission's own import world: its folder on ``sys.path``, its modules, its
environment variables and its prints, switched on only while its code runs.

The organisers' ingestion puts the submission folder and its sub-folders on
``sys.path`` and imports ``model``; submissions import their sibling modules by
bare name (``from boosted_decision_tree import BoostedDecisionTree``).  Two
submissions in one process may both have a ``model`` module, so the modules a
submission brings are kept aside between calls: :meth:`SubmissionModules.active`
puts them into ``sys.modules`` (and the folders first on ``sys.path``) for the
duration of one call and takes them out again afterwards, restoring whatever had
the same names before.  Third-party packages the submission imports (xgboost,
scikit-learn, ...) stay imported: they are not the submission's.

:class:`OutputCapture` sends what the submission's thread writes to
``sys.stdout``/``sys.stderr`` to a log file; other threads (a progress bar) keep
the terminal.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ()))


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class SubmissionModules:
    """The import state of one submission folder (see the module docstring)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.root = os.path.realpath(self.directory)
        self.saved: dict[str, ModuleType] = {}
        """The submission's modules, kept out of ``sys.modules`` between calls."""

    # -- what belongs to the submission ------------------------------------------
    def search_paths(self) -> list[str]:
        """The folder, then its sub-folders (as the organisers' ingestion adds them)."""
        paths = [str(self.directory)]
        try:
            entries = sorted(os.listdir(self.directory))
        except OSError:
            entries = []
        for entry in entries:
            full = self.directory / entry
            if full.is_dir() and not entry.startswith(("__", ".")):
                paths.append(str(full))
        return paths

    def top_names(self, paths: list[str]) -> set[str]:
        """Top-level module names the folders provide (``x.py``, packages ``x/``)."""
        names = set()
        for folder in paths:
            try:
                entries = os.listdir(folder)
            except OSError:
                continue
            for entry in entries:
                stem, ext = os.path.splitext(entry)
                stem = stem.split(".")[0]  # foo.cpython-311-x86_64-linux-gnu.so -> foo
                if ext in (".py", ".pyc", ".so", ".pyd") and stem.isidentifier():
                    names.add(stem)
                elif (not ext and entry.isidentifier() and not entry.startswith("__")
                      and os.path.isdir(os.path.join(folder, entry))):
                    names.add(entry)
        return {n for n in names if n not in _STDLIB}

    def owns(self, module: Any) -> bool:
        """Whether a module object was loaded from the submission's folder."""
        file = getattr(module, "__file__", None)
        if isinstance(file, str):
            return _is_under(os.path.realpath(file), self.root)
        paths = getattr(module, "__path__", None)  # namespace packages have no __file__
        try:
            paths = list(paths) if paths is not None else []
        except TypeError:
            return False
        return bool(paths) and all(_is_under(os.path.realpath(p), self.root) for p in paths)

    # -- switching it on and off -----------------------------------------------
    @contextmanager
    def active(self, environment: Mapping[str, str] | None = None) -> Iterator[None]:
        """Run a block with the submission's folders first on ``sys.path``, its
        modules in ``sys.modules`` and ``environment`` set; everything is restored
        on exit (including what the submission did to ``sys.path``)."""
        paths = self.search_paths()
        names = self.top_names(paths) | {n.split(".")[0] for n in self.saved}
        saved_path = list(sys.path)
        saved_env = {k: os.environ.get(k) for k in (environment or {})}
        saved_bytecode = sys.dont_write_bytecode
        shadowed: dict[str, ModuleType] = {}
        for name in list(sys.modules):
            if name.split(".")[0] in names:
                shadowed[name] = sys.modules.pop(name)
        before = set(sys.modules)
        sys.modules.update(self.saved)
        sys.path[:0] = paths
        sys.dont_write_bytecode = True  # no __pycache__ left in the submission's folder
        os.environ.update(environment or {})
        try:
            yield
        finally:
            own: dict[str, ModuleType] = {}
            for name, module in list(sys.modules.items()):
                new = name in self.saved or name not in before
                if new and (name.split(".")[0] in names or self.owns(module)):
                    own[name] = module
            for name in own:
                sys.modules.pop(name, None)
            self.saved = own
            sys.modules.update(shadowed)
            sys.path[:] = saved_path
            sys.dont_write_bytecode = saved_bytecode
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def __getstate__(self) -> dict[str, Any]:
        # module objects do not travel: a worker imports the submission afresh
        return {"directory": self.directory, "root": self.root, "saved": {}}


class _ThreadRouter(io.TextIOBase):
    """A ``sys.stdout``/``sys.stderr`` stand-in: writes of registered threads go to
    their file, everything else to the stream it replaced."""

    def __init__(self, fallback: TextIO):
        self.fallback = fallback
        self.targets: dict[int, TextIO] = {}

    def _target(self) -> TextIO:
        return self.targets.get(threading.get_ident(), self.fallback)

    def write(self, text: str) -> int:
        self._target().write(text)
        return len(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return self._target().isatty()

    def fileno(self) -> int:
        return self._target().fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target(), "encoding", "utf-8")

    def writable(self) -> bool:
        return True


_ROUTER_LOCK = threading.Lock()


class OutputCapture:
    """Route this thread's ``sys.stdout``/``sys.stderr`` to ``path`` (appended)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @contextmanager
    def active(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ident = threading.get_ident()
        with open(self.path, "a", buffering=1, encoding="utf-8", errors="replace") as log:
            routers = []
            with _ROUTER_LOCK:
                for name in ("stdout", "stderr"):
                    stream = getattr(sys, name)
                    if not isinstance(stream, _ThreadRouter):
                        stream = _ThreadRouter(stream)
                        setattr(sys, name, stream)
                    routers.append((name, stream, stream.targets.get(ident)))
                    stream.targets[ident] = log
            try:
                yield
            finally:
                with _ROUTER_LOCK:
                    for name, router, outer in routers:
                        if outer is not None:  # a nested capture: back to the outer log
                            router.targets[ident] = outer
                            continue
                        router.targets.pop(ident, None)
                        if not router.targets and getattr(sys, name) is router:
                            setattr(sys, name, router.fallback)


__all__ = ["OutputCapture", "SubmissionModules"]
