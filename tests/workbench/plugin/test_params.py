"""Declared strategy parameters: spec tables validated by name and type, errors that
list the valid names with their types, and the registry handing the instance over."""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Literal

import pytest

from workbench import hookimpl, resolve_params
from workbench.plugin.params import ParameterError, describe, parse_params, type_name
from workbench.plugin.registry import PluginError, build_registry


@dataclass
class Base:
    bins: int = 20
    scale: float = 1.0


@dataclass
class Params(Base):
    mode: Literal["fast", "exact"] = "fast"
    bounds: tuple[float, float] | None = None
    names: list[str] = field(default_factory=lambda: ["a"])
    options: dict[str, float] = field(default_factory=dict)
    flag: bool = False

    def __post_init__(self) -> None:
        if self.bins < 1:
            raise ValueError(f"bins={self.bins} must be >= 1")


@dataclass
class Required:
    directory: str


def test_defaults_and_conversions():
    p = parse_params(Params, {"scale": 2, "bounds": [0, 5], "names": ["x", "y"],
                              "options": {"k": 1}}, "template 'toy'")
    assert p == Params(bins=20, scale=2.0, bounds=(0.0, 5.0), names=["x", "y"],
                       options={"k": 1.0})
    assert isinstance(p.scale, float) and isinstance(p.bounds, tuple)
    assert parse_params(Params, None, "t") == Params()


def test_inherited_fields_are_parameters():
    assert list(describe(Params))[:2] == ["bins", "scale"]


@pytest.mark.parametrize("raw, needle", [
    ({"bins": "20"}, "parameter bins='20' must be int"),
    ({"bins": 2.5}, "parameter bins=2.5 must be int"),
    ({"bins": True}, "must be int"),
    ({"scale": "x"}, "must be float"),
    ({"mode": "slow"}, "must be 'fast' | 'exact'"),
    ({"bounds": [1, 2, 3]}, "must be tuple[float, float] | none"),
    ({"names": "abc"}, "must be list[str]"),
    ({"flag": 1}, "must be bool"),
    ({"options": {"k": "v"}}, "must be dict[str, float]"),
])
def test_wrong_types_name_the_parameter_and_its_type(raw, needle):
    with pytest.raises(ParameterError, match="template 'toy'") as info:
        parse_params(Params, raw, "template 'toy'")
    assert needle in str(info.value)


def test_unknown_keys_list_the_valid_ones_with_types():
    with pytest.raises(ParameterError) as info:
        parse_params(Params, {"binz": 3, "zz": 1}, "template 'toy'")
    msg = str(info.value)
    assert "unknown parameter(s) binz, zz for template 'toy'" in msg
    assert "bins (int)" in msg and "mode ('fast' | 'exact')" in msg and "flag (bool)" in msg


def test_range_checks_of_the_dataclass_name_the_strategy():
    with pytest.raises(ParameterError, match="template 'toy': bins=0 must be >= 1"):
        parse_params(Params, {"bins": 0}, "template 'toy'")


def test_required_parameters():
    with pytest.raises(ParameterError, match="missing required parameter.*directory"):
        parse_params(Required, {}, "interval 'x'")
    assert describe(Required)["directory"]["required"] is True


def test_resolve_params_from_python():
    assert resolve_params(Params, None, {"bins": 5}, "t").bins == 5
    assert resolve_params(Params, Params(bins=7), {}, "t").bins == 7
    assert resolve_params(Params, Params(bins=7), {"scale": 3}, "t") == Params(bins=7, scale=3.0)
    with pytest.raises(ParameterError, match="expected Params"):
        resolve_params(Params, Base(), {}, "t")


def test_type_names_are_readable():
    assert type_name(int | None) == "int | none"
    assert type_name(list[float]) == "list[float]"


class _Declared:
    def __init__(self, params: Params | None = None, /, **kw):
        self.params = resolve_params(Params, params, kw, "toy")

    def build(self, data, classifier):  # pragma: no cover - not called
        raise NotImplementedError


def _registry():
    plugin = types.ModuleType("toy_params_plugin")

    @hookimpl
    def register_templates(register):
        register("toy", _Declared, params=Params)

    plugin.register_templates = register_templates
    return build_registry(extra_plugins={"toy": plugin})


def test_registry_validates_declared_params_and_passes_the_instance():
    registry = _registry()
    obj = registry.create("template", "toy", {"bins": 3, "mode": "exact"})
    assert obj.params == Params(bins=3, mode="exact")
    strategy = registry.get("template", "toy")
    assert strategy.parameters["bins"] == 20
    assert strategy.parameter_types["mode"] == "'fast' | 'exact'"
    with pytest.raises(PluginError, match=r"unknown parameter\(s\) nbins for template 'toy'; "
                                          r"valid: bins \(int\)"):
        registry.create("template", "toy", {"nbins": 3})
    with pytest.raises(PluginError, match="parameter bins='3' must be int"):
        registry.create("template", "toy", {"bins": "3"})


def test_a_non_dataclass_params_declaration_is_refused():
    plugin = types.ModuleType("bad_params_plugin")

    @hookimpl
    def register_templates(register):
        register("bad", _Declared, params=dict)

    plugin.register_templates = register_templates
    with pytest.raises(PluginError, match="not a dataclass"):
        build_registry(extra_plugins={"bad": plugin})


def test_every_builtin_declares_its_parameters():
    """Built-ins use the same declared-parameter hook a third party does."""
    registry = build_registry()
    undeclared = [f"{s.kind} {s.name}" for by_name in registry.strategies.values()
                  for s in by_name.values()
                  if s.plugin != "example" and s.params_type is None
                  and (s.distribution or "").startswith("fair-workbench")]
    assert not undeclared, undeclared
