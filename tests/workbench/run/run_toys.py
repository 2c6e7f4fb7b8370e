"""Toy plugins and specs for the runner's fault tests, and a driver that runs the CLI
with them: ``python run_toys.py run SPEC ...`` is ``workbench run SPEC ...`` with the
toy plugins registered (used as a subprocess to kill it)."""

from __future__ import annotations

import os
import signal
import sys
import time
import types
from pathlib import Path

# run as a script: the repository (for workbench, not tests/workbench) then tests/ (for toys)
_ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [p for p in (str(_ROOT), str(_ROOT / "tests")) if p not in sys.path]

from toys import Counting, HadPtScore, ResampledReference  # noqa: E402

from workbench import IntervalResult, hookimpl  # noqa: E402
from workbench.data.schema import PROCESSES  # noqa: E402


class SlowCounting(Counting):
    """Counting, ``delay`` seconds per PE (so that a kill lands mid-run).

    ``die_once``: a marker file; the first PE that finds it missing creates it and
    SIGKILLs its own process (a dask worker that dies).  ``min_events``: fewer
    events raise (a strategy that cannot use small PEs).  ``bounds``: report every
    interval as ending at the fit's upper bound.
    """

    fits = 0

    def __init__(self, delay: float = 0.0, die_once: str = "", min_events: int = 0,
                 bounds: bool = False) -> None:
        super().__init__()
        self.delay = delay
        self.die_once = die_once
        self.min_events = min_events
        self.bounds = bounds

    def fit(self, data, classifier, templates):
        SlowCounting.fits += 1
        super().fit(data, classifier, templates)

    def predict(self, events):
        if self.die_once and not os.path.exists(self.die_once):
            Path(self.die_once).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        if len(events) < self.min_events:
            raise ValueError(f"needs at least {self.min_events} events, got {len(events)}")
        time.sleep(self.delay)
        r = super().predict(events)
        if self.bounds:
            return IntervalResult(r.mu_hat, r.mu16, r.mu84, info={**r.info, "mu84_at_bound": True})
        return r


class FlatTemplates:
    """Templates whose signal is zero in every bin (a degenerate model)."""

    poi = "mu"

    def observations(self, events):
        return {"c": [float(len(events))]}

    def workspace(self, observations=None):
        return {"channels": [{"name": "c", "samples": [
            {"name": "signal", "data": [0.0], "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "background", "data": [10.0], "modifiers": []}]}],
            "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
            "observations": [{"name": "c", "data": observations["c"] if observations else [10.0]}],
            "version": "1.0.0"}


class FlatTemplateStrategy:
    def build(self, data, classifier):
        return FlatTemplates()


toy = types.ModuleType("run_toy")
toy.register_generators = hookimpl(lambda register: register("toy-reference", ResampledReference))
toy.register_intervals = hookimpl(lambda register: (register("counting", Counting),
                                                    register("slow-counting", SlowCounting)))
toy.register_classifiers = hookimpl(lambda register: register("had-pt", HadPtScore))
toy.register_templates = hookimpl(lambda register: register("flat", FlatTemplateStrategy))


def toy_registry():
    from workbench.plugin.registry import build_registry

    return build_registry(extra_plugins={"run_toy": toy})


def spec_dict(out, trials=3, per_trial=3, interval=None, pes=None, size=5000, **top) -> dict:
    return {
        "name": "toy",
        "seed": 11,
        "data": {
            "generator": "toy-reference",
            "train": {"htautau": 100, "ztautau": 100},
            "holdout": {p: size for p in PROCESSES},
            "test_pool": {p: size for p in PROCESSES},
            "luminosity_fb": 0.05,
        },
        "pseudo_experiments": {"trials": trials, "per_trial": per_trial, "mu_range": [0.5, 3.0],
                               "randomise": [], "fixed": {"soft_met": 1.0}, **(pes or {})},
        "interval": interval or {"name": "counting"},
        "output": {"directory": str(out), "plots": False, "progress": False},
        **top,
    }


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def write_spec(path: Path, spec: dict) -> Path:
    """A spec dict as a TOML file (top-level tables as inline tables)."""
    lines = [f"{k} = {_toml(v)}" for k, v in spec.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    import workbench.plugin.registry as registry_module
    from workbench.cli import main

    # the toys only: loading every installed plugin would cost each subprocess seconds
    registry_module.md = types.SimpleNamespace(entry_points=lambda group: [])
    registry_module._CACHE = toy_registry()
    sys.exit(main(sys.argv[1:]))
