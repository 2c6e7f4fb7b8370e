"""Plugin discovery through real entry points, duplicates, failures, parameters."""

import sys
import textwrap

import pytest

from workbench.plugin.registry import PluginError, build_registry


def _fake_distribution(tmp_path, dist, modules: dict[str, str], entry_points: dict[str, str]):
    """Install a throw-away distribution (dist-info + modules) on sys.path."""
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    info = tmp_path / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[workbench]\n{lines}\n")


@pytest.fixture
def syspath(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("wbtest_")]:
        del sys.modules[mod]


GOOD = """
from workbench import hookimpl

class Constant:
    '''An interval strategy that always answers the same interval.'''
    def __init__(self, low: float = 0.5, high: float = 1.5):
        self.low, self.high = low, high
    def fit(self, data, classifier, templates):
        pass
    def predict(self, events):
        from workbench import IntervalResult
        return IntervalResult(0.5 * (self.low + self.high), self.low, self.high)

@hookimpl
def register_intervals(register):
    register("constant", Constant)
"""


def test_third_party_entry_point_is_discovered(syspath):
    _fake_distribution(syspath, "wbtest-good", {"wbtest_good": GOOD}, {"good": "wbtest_good"})
    reg = build_registry()
    strategy = reg.get("interval", "constant")
    assert strategy.distribution == "wbtest-good"
    assert strategy.version == "1.2.3"
    assert strategy.parameters == {"low": 0.5, "high": 1.5}
    obj = reg.create("interval", "constant", {"low": 0.1})
    assert obj.predict(None).mu16 == 0.1
    listing = reg.as_dict()
    entry = next(p for p in listing["plugins"] if p["name"] == "good")
    assert entry["strategies"] == {"interval": ["constant"]}


def test_broken_plugin_is_reported_with_its_distribution(syspath):
    _fake_distribution(syspath, "wbtest-broken", {"wbtest_broken": "import not_a_module_xyz\n"},
                       {"broken": "wbtest_broken"})
    reg = build_registry()
    info = next(p for p in reg.plugins if p.name == "broken")
    assert info.distribution == "wbtest-broken"
    assert "not_a_module_xyz" in info.error


def test_duplicate_strategy_names_name_both_owners(syspath):
    _fake_distribution(syspath, "wbtest-a", {"wbtest_a": GOOD}, {"a": "wbtest_a"})
    twin = tmp = syspath / "twin"
    tmp.mkdir()
    sys.path.insert(0, str(twin))
    try:
        _fake_distribution(twin, "wbtest-b", {"wbtest_b": GOOD}, {"b": "wbtest_b"})
        with pytest.raises(PluginError, match="registered twice.*wbtest-a.*wbtest-b"):
            build_registry()
    finally:
        sys.path.remove(str(twin))


def test_unknown_names_and_parameters_list_the_valid_ones(syspath):
    _fake_distribution(syspath, "wbtest-good", {"wbtest_good": GOOD}, {"good": "wbtest_good"})
    reg = build_registry()
    with pytest.raises(PluginError, match=r"unknown interval 'nope'; valid intervals: .*constant"):
        reg.get("interval", "nope")
    with pytest.raises(PluginError, match=r"unknown parameter\(s\) wdith .*valid: high, low"):
        reg.create("interval", "constant", {"wdith": 1})
    with pytest.raises(PluginError, match="unknown plugin kind 'bogus'"):
        reg.get("bogus", "x")


def test_builtins_register_through_entry_points():
    reg = build_registry()
    builtins = {p.name: p for p in reg.plugins}
    assert builtins["simulator"].distribution == "fair-workbench"
    assert "simulator" in reg.names("generator")
    assert reg.get("generator", "simulator").distribution == "fair-workbench"
