"""The workbench's anticipated errors: one hierarchy under :class:`WorkbenchError`.

Every problem a user can cause or fix (a bad spec, a bad data file, a locked or
foreign output folder, an unreachable scheduler...) raises a subclass of
:class:`WorkbenchError` whose message is one line that names the culprit (the
file, key, plugin or process) and, where there is one, the fix.  The command
line prints that line and exits with status 2; anything else is a bug and keeps
its traceback.  The classes also derive from the built-in type a caller would
have caught before (``ValueError``, ``RuntimeError``), so existing ``except``
clauses keep working.

This module imports nothing from the workbench, so every other module can use it.
Two anticipated errors are defined next to the code that raises them and are
handled the same way by the command line: ``workbench.data.events.SchemaError``
and ``workbench.plugin.registry.PluginError``.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """An anticipated problem; the message names the culprit and the fix."""


class SpecError(WorkbenchError, ValueError):
    """A run specification is invalid; the message names the key."""


class DataFileError(WorkbenchError, ValueError):
    """A data file cannot be read or written; the message names the file."""


class DataError(WorkbenchError, ValueError):
    """The data a spec asks for cannot be had (too few events, an empty pool...)."""


class PseudoExperimentError(DataError):
    """A pseudo-experiment cannot be drawn or has too few events for its strategy."""


class CheckpointError(WorkbenchError, ValueError):
    """A run folder's checkpoint cannot be resumed (another spec, a corrupt header...)."""


class RunFolderError(WorkbenchError, RuntimeError):
    """An output folder is in use by another run, or holds a run that would be lost."""


class ExecutorError(WorkbenchError, RuntimeError):
    """Where pseudo-experiments run failed: a scheduler out of reach, workers lost."""


class ScoreError(WorkbenchError, ValueError):
    """Intervals cannot be scored (non-finite values, mu16 > mu84, nothing to score)."""


__all__ = [
    "CheckpointError",
    "DataError",
    "DataFileError",
    "ExecutorError",
    "PseudoExperimentError",
    "RunFolderError",
    "ScoreError",
    "SpecError",
    "WorkbenchError",
]
