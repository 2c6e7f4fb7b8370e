"""Built-in event simulator: the workbench's embedded default data source.

A fast, columnar, physics-based generator of the four processes of the FAIR
Universe HiggsML dataset (H -> tau tau, Z -> tau tau, t tbar, dibosons) in the
public dataset's schema; see docs/simulator.md for the model and calibration.

The registered strategy is :class:`Simulator` with its parameters declared as
:class:`SimulatorParams`; the physics lives in the submodules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workbench import hookimpl, resolve_params
from workbench_builtins.generators.simulator import generator
from workbench_builtins.generators.simulator.generator import simulate_to_parquet

__all__ = ["Simulator", "SimulatorParams", "simulate_to_parquet", "register_generators"]


@dataclass
class SimulatorParams:
    """Parameters of the "simulator" generator: overrides of its calibration constants."""

    detector: dict[str, Any] | None = None
    """Detector settings, e.g. ``{"had_resolution": 0.1}``."""
    processes: dict[str, dict[str, Any]] | None = None
    """Per-process settings, e.g. ``{"ztautau": {"isr": {"rate": 1.0}}}``."""
    batch_size: int | None = None
    """Candidates per batch for every process (default: per process; it changes the
    random stream, hence the events)."""

    def __post_init__(self) -> None:
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


class Simulator(generator.Simulator):
    """Built-in physics simulator of the four processes (``generator`` plugin "simulator").

    ``Simulator(SimulatorParams(batch_size=4096))`` or ``Simulator(batch_size=4096)``;
    see :class:`SimulatorParams` and
    :class:`workbench_builtins.generators.simulator.generator.Simulator`.
    """

    def __init__(self, params: SimulatorParams | None = None, /, **overrides: Any) -> None:
        p = resolve_params(SimulatorParams, params, overrides, "simulator")
        self.params = p
        super().__init__(detector=p.detector, processes=p.processes, batch_size=p.batch_size)


@hookimpl
def register_generators(register):
    register("simulator", Simulator, params=SimulatorParams)
