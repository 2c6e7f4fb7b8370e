"""Declared strategy parameters: a dataclass per strategy, validated before any work.

A strategy registers its parameters with ``register(name, factory, params=P)``
where ``P`` is a dataclass (fields with types and defaults; range checks in its
``__post_init__``).  The registry turns a spec's ``params = {...}`` table into a
``P`` instance with :func:`parse_params` -- unknown keys and wrong types are errors
that list the valid names and their types -- and calls ``factory(instance)``.

Shared parameter sets are shared by inheritance (``class Mine(AggregateParams)``),
never by re-typing keywords, and a strategy built from Python takes the same
object or keyword overrides: ``Strategy(P(bins=10))`` or ``Strategy(bins=10)``
(see :func:`resolve_params`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections import abc
from collections.abc import Mapping
from typing import Any, TypeVar, Union, get_args, get_origin

P = TypeVar("P")


class ParameterError(ValueError):
    """A strategy parameter that is unknown, of the wrong type or out of range."""


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: accept any value
        return {f.name: Any for f in dataclasses.fields(cls)}


def type_name(tp: Any) -> str:
    """A short, readable name of a field type (``int``, ``list[float]``, ``'a' | 'b'``)."""
    if tp is Any:
        return "any"
    origin = get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(tp))
    if origin is not None:
        args = [type_name(a) for a in get_args(tp) if a is not Ellipsis]
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(args)}]" if args else base
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or raise TypeError; TOML gives lists, ints for floats."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is typing.Literal:
        if value in get_args(tp):
            return value
        raise TypeError
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _convert(value, arg)
            except TypeError:
                continue
        raise TypeError
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError
    if origin in (list, tuple, abc.Sequence):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise TypeError
            return tuple(_convert(v, a) for v, a in zip(value, args))
        item = args[0] if args else Any
        out = [_convert(v, item) for v in value]
        return tuple(out) if origin is tuple else out
    if origin in (dict, abc.Mapping):
        if not isinstance(value, Mapping):
            raise TypeError
        key_t, val_t = (get_args(tp) or (Any, Any))
        return {_convert(k, key_t): _convert(v, val_t) for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise TypeError
    return value


def describe(cls: Any) -> dict[str, dict[str, Any]]:
    """Field -> {"type", "default"} of a parameter dataclass (for listings and errors)."""
    hints = _type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out[f.name] = {"type": type_name(hints.get(f.name, Any)), "default": default,
                       "required": f.default is dataclasses.MISSING
                       and f.default_factory is dataclasses.MISSING}
    return out


def valid_list(cls: type) -> str:
    return ", ".join(f"{name} ({d['type']})" for name, d in describe(cls).items()) or "(none)"


def parse_params(cls: Any, raw: Mapping[str, Any] | None, where: str) -> Any:
    """Build ``cls`` from a spec table, naming the strategy (``where``) in every error."""
    raw = dict(raw or {})
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(unknown)} for {where}; valid: {valid_list(cls)}"
        )
    missing = [n for n, f in fields.items() if n not in raw
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ParameterError(f"{where}: missing required parameter(s) {', '.join(missing)}; "
                             f"valid: {valid_list(cls)}")
    values = {}
    for name, value in raw.items():
        tp = hints.get(name, Any)
        try:
            values[name] = _convert(value, tp)
        except TypeError:
            raise ParameterError(
                f"{where}: parameter {name}={value!r} must be {type_name(tp)}"
            ) from None
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{where}: {exc}") from exc


def resolve_params(cls: type[P], params: P | None, overrides: Mapping[str, Any],
                   where: str) -> P:
    """The parameters of a strategy built from Python: an instance, keywords, or both."""
    return _resolve(cls, params, overrides, where)


def _resolve(cls: Any, params: Any, overrides: Mapping[str, Any], where: str) -> Any:
    if params is not None and not isinstance(params, cls):
        raise ParameterError(f"{where}: expected {cls.__name__}, got {type(params).__name__}")
    if params is None:
        return parse_params(cls, overrides, where)
    if overrides:
        base = {f.name: getattr(params, f.name) for f in dataclasses.fields(cls) if f.init}
        base.update(overrides)
        return parse_params(cls, base, where)
    return params


__all__ = ["ParameterError", "describe", "parse_params", "resolve_params", "type_name"]
