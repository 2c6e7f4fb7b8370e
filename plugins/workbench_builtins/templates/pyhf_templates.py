"""Built-in template strategy "pyhf": binned classifier-score templates as a pyhf model.

The strategy is the HistFactory builder of :mod:`workbench.toolkit.templates`
(channels per category, tes/jes/soft_met histosys, scale normsys, staterror;
optional norm/shape split, symmetrisation, smoothing and pruning) with its
parameters declared as :class:`~workbench.toolkit.templates.HistFactoryParams`.
The built :class:`~workbench.toolkit.templates.BinnedTemplates` export their
pyhf workspace, which the profile-likelihood interval fits.
"""

from __future__ import annotations

from typing import Any

from workbench import hookimpl, resolve_params
from workbench.toolkit.templates import HistFactoryParams, HistFactoryTemplates


class PyhfTemplates(HistFactoryTemplates):
    """Classifier-score histograms per category with tes/jes/soft_met histosys
    (optionally split into normsys + shape histosys), scale normsys and staterror.

    ``PyhfTemplates(HistFactoryParams(bins=12))`` or ``PyhfTemplates(bins=12)``.
    """

    def __init__(self, params: HistFactoryParams | None = None, /, **overrides: Any) -> None:
        super().__init__(resolve_params(HistFactoryParams, params, overrides, "pyhf templates"))


@hookimpl
def register_templates(register):
    register("pyhf", PyhfTemplates, params=HistFactoryParams)


__all__ = ["PyhfTemplates", "register_templates"]
