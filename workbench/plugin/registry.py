"""Discovery of plugins (entry-point group ``workbench``) and of their strategies.

Built-ins are found exactly as third-party packages are: through their
distribution's entry points.  A plugin that fails to import is recorded with
its distribution and the error, not fatal, so one broken package does not take
the workbench down; ``workbench plugins`` shows it.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from workbench.errors import WorkbenchError
from workbench.plugin import hookspecs
from workbench.plugin.hookspecs import ENTRY_POINT_GROUP, KINDS, PROJECT
from workbench.plugin.params import ParameterError, describe, parse_params


class PluginError(WorkbenchError, RuntimeError):
    """A plugin problem: unknown name, duplicate registration, bad parameters."""


@dataclass(frozen=True)
class Strategy:
    """One registered strategy: its factory and, when declared, its parameter dataclass."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str | None
    version: str | None
    params_type: type | None = None
    """The dataclass of the strategy's parameters (``register(..., params=P)``)."""

    @property
    def parameters(self) -> dict[str, Any]:
        """Parameter names with their defaults (``None`` if required)."""
        if self.params_type is not None:
            return {name: d["default"] for name, d in describe(self.params_type).items()}
        out = {}
        for p in _signature_params(self.factory):
            out[p.name] = None if p.default is inspect.Parameter.empty else p.default
        return out

    @property
    def parameter_types(self) -> dict[str, str]:
        """Parameter names with their declared types (``"any"`` when undeclared)."""
        if self.params_type is not None:
            return {name: d["type"] for name, d in describe(self.params_type).items()}
        return {name: "any" for name in self.parameters}

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.factory) or ""
        return doc.splitlines()[0] if doc else ""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    error: str | None = None


def _signature_params(factory) -> list[inspect.Parameter]:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    return [
        p
        for p in sig.parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
    ]


@dataclass
class Registry:
    """Strategies by kind and name, plus what was loaded and what failed."""

    manager: pluggy.PluginManager
    strategies: dict[str, dict[str, Strategy]] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)

    def names(self, kind: str) -> list[str]:
        self._check_kind(kind)
        return sorted(self.strategies.get(kind, {}))

    def get(self, kind: str, name: str) -> Strategy:
        self._check_kind(kind)
        found = self.strategies.get(kind, {})
        if name not in found:
            valid = ", ".join(sorted(found)) or "(none installed)"
            raise PluginError(f"unknown {kind} {name!r}; valid {kind}s: {valid}")
        return found[name]

    def create(self, kind: str, name: str, params: Mapping[str, Any] | None = None) -> Any:
        """Instantiate a strategy from a spec's parameter table.

        Declared parameters (a dataclass) are validated by name and type and the
        factory gets the instance; an undeclared factory gets keywords, checked
        against its signature.
        """
        strategy = self.get(kind, name)
        params = dict(params or {})
        where = f"{kind} {name!r}"
        if strategy.params_type is not None:
            try:
                parsed: Any = parse_params(strategy.params_type, params, where)
            except ParameterError as exc:
                raise PluginError(str(exc)) from exc
            try:
                return strategy.factory(parsed)
            except (TypeError, ValueError) as exc:
                raise PluginError(f"{where} ({strategy.plugin}): {exc}") from exc
        accepted = _signature_params(strategy.factory)
        try:
            takes_any = any(
                p.kind is p.VAR_KEYWORD
                for p in inspect.signature(strategy.factory).parameters.values()
            )
        except (TypeError, ValueError):
            takes_any = True
        valid = {p.name for p in accepted}
        unknown = sorted(set(params) - valid)
        if unknown and not takes_any:
            raise PluginError(
                f"unknown parameter(s) {', '.join(unknown)} for {kind} {name!r}; "
                f"valid: {', '.join(sorted(valid)) or '(none)'}"
            )
        try:
            return strategy.factory(**params)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"{kind} {name!r} ({strategy.plugin}): {exc}") from exc

    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            raise PluginError(f"unknown plugin kind {kind!r}; valid: {', '.join(KINDS)}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly listing for ``workbench plugins --json``."""
        return {
            "hook_api_version": hookspecs.HOOK_API_VERSION,
            "plugins": [
                {
                    "name": p.name,
                    "distribution": p.distribution,
                    "version": p.version,
                    **({"error": p.error} if p.error else {}),
                    "strategies": {
                        kind: sorted(
                            s.name for s in by_name.values() if s.plugin == p.name
                        )
                        for kind, by_name in self.strategies.items()
                        if any(s.plugin == p.name for s in by_name.values())
                    },
                }
                for p in self.plugins
            ],
        }


def _add_strategies(registry: Registry, dists: Mapping[str, tuple[str | None, str | None]]) -> None:
    """Call each plugin's register hooks, attributing every strategy to its plugin."""
    for kind, hook_name in KINDS.items():
        caller = getattr(registry.manager.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order
            plugin_name = impl.plugin_name
            dist, version = dists.get(plugin_name, (None, None))

            def register(name: str, factory: Callable[..., Any], params: type | None = None,
                         _kind: str = kind, _plugin: str = plugin_name, _dist=dist,
                         _version=version) -> None:
                if not isinstance(name, str) or not name:
                    raise PluginError(f"plugin {_plugin!r} registered a {_kind} with no name")
                existing = registry.strategies.setdefault(_kind, {}).get(name)
                if existing is not None:
                    raise PluginError(
                        f"{_kind} {name!r} is registered twice: by plugin "
                        f"{existing.plugin!r} ({existing.distribution or 'not installed'}) "
                        f"and by plugin {_plugin!r} ({_dist or 'not installed'})"
                    )
                if params is not None and not dataclasses.is_dataclass(params):
                    raise PluginError(f"plugin {_plugin!r}: {_kind} {name!r} declares params="
                                      f"{params!r}, which is not a dataclass")
                registry.strategies[_kind][name] = Strategy(
                    _kind, name, factory, _plugin, _dist, _version, params
                )

            impl.function(register=register)


def build_registry(extra_plugins: Mapping[str, object] | None = None) -> Registry:
    """Load entry-point plugins (and ``extra_plugins``, name -> module, for tests)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry(manager=pm)
    loaded: list[tuple[str, object, str | None, str | None]] = []
    for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            registry.plugins.append(
                PluginInfo(ep.name, dist, version, f"{type(exc).__name__}: {exc}")
            )
            continue
        if pm.is_registered(module) or pm.has_plugin(ep.name):
            other = next((p for p in registry.plugins if p.name == ep.name), None)
            raise PluginError(
                f"plugin {ep.name!r} from {dist} is registered twice"
                + (f" (also by {other.distribution})" if other else "")
            )
        pm.register(module, name=ep.name)
        loaded.append((ep.name, module, dist, version))
        registry.plugins.append(PluginInfo(ep.name, dist, version))
    for name, module in (extra_plugins or {}).items():
        pm.register(module, name=name)
        loaded.append((name, module, None, None))
        registry.plugins.append(PluginInfo(name, None, None))
    _add_strategies(registry, {name: (dist, version) for name, _, dist, version in loaded})
    return registry


_CACHE: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, built once."""
    global _CACHE
    if _CACHE is None or refresh:
        _CACHE = build_registry()
    return _CACHE
