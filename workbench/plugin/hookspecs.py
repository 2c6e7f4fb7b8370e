"""Hook specifications of the ``workbench`` pluggy host.

Each hook receives a ``register(name, factory)`` callback, in the style of
``llm``'s ``register_models``.  ``factory(**params)`` must return an object
following the matching protocol in :mod:`workbench.plugin.protocols`; its keyword
arguments are the strategy's spec parameters.

Versioning policy: hooks are only ever added; a hook's arguments never change
within a major version.  ``HOOK_API_VERSION`` is bumped on additions.
"""

from __future__ import annotations

import pluggy

PROJECT = "workbench"
ENTRY_POINT_GROUP = "workbench"
HOOK_API_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_generators(register):
    """Register event sources (``workbench.plugin.protocols.Generator``)."""


@hookspec
def register_classifiers(register):
    """Register classifiers (``workbench.plugin.protocols.Classifier``)."""


@hookspec
def register_templates(register):
    """Register template strategies (``workbench.plugin.protocols.TemplateStrategy``)."""


@hookspec
def register_intervals(register):
    """Register interval strategies (``workbench.plugin.protocols.IntervalStrategy``)."""


@hookspec
def register_diagnostics(register):
    """Register diagnostics (``workbench.plugin.protocols.Diagnostic``)."""


KINDS = {
    "generator": "register_generators",
    "classifier": "register_classifiers",
    "template": "register_templates",
    "interval": "register_intervals",
    "diagnostic": "register_diagnostics",
}
"""Plugin kind -> the hook that registers it."""
