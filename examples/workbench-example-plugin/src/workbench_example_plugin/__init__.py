"""workbench-example-plugin: a third-party plugin package for fair-workbench.

The distribution declares ``[project.entry-points.workbench] example =
"workbench_example_plugin"``; the workbench loads this module and calls its
``@hookimpl`` functions, which register strategies by name.
"""

from workbench import hookimpl

from .cut_and_count import (
    CutAndCount,
    CutAndCountParams,
    poisson_profile_interval,
    profiled_background,
    q_mu,
)

__version__ = "0.1.0"
__all__ = ["CutAndCount", "CutAndCountParams", "poisson_profile_interval", "profiled_background", "q_mu",
           "register_intervals"]


@hookimpl
def register_intervals(register):
    register("cut-and-count", CutAndCount, params=CutAndCountParams)
