"""Built-in event simulator: the workbench's embedded default data source.

A fast, columnar, physics-based generator of the four processes of the FAIR
Universe HiggsML dataset (H -> tau tau, Z -> tau tau, t tbar, dibosons) in the
public dataset's schema; see docs/simulator.md for the model and calibration.
"""

from workbench import hookimpl
from workbench_builtins.generators.simulator.generator import Simulator, simulate_to_parquet

__all__ = ["Simulator", "simulate_to_parquet", "register_generators"]


@hookimpl
def register_generators(register):
    register("simulator", Simulator)
