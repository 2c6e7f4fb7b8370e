"""Built-in interval strategy: the profile-likelihood interval of the template model.

The model is set up once in ``fit``: the templates' own likelihood when they
bring one (:class:`workbench.plugin.protocols.LikelihoodTemplates`, e.g.
"polynomial"), else their pyhf workspace, compiled to a NumPy likelihood with an
analytic gradient when it can be.  Per pseudo-experiment only the observed counts
change.  The fitting machinery (compiled model, MINUIT fits, the q(mu) crossings)
lives in :mod:`workbench.toolkit.profile`, shared with the workspace export.
"""

from __future__ import annotations

import time

import numpy as np

from workbench import (
    Classifier,
    Events,
    IntervalResult,
    LikelihoodTemplates,
    Templates,
    TrainingData,
    hookimpl,
)
from workbench.toolkit.profile import ProfileFitter, ProfileParams


class ProfileLikelihood(ProfileFitter):
    """Profile-likelihood interval (q(mu) = 1 crossings) of the template model, iminuit fits."""

    def fit(self, data: TrainingData | None, classifier: Classifier | None,
            templates: Templates | None) -> None:
        """Build the model once (and its compiled likelihood)."""
        if templates is None:
            raise ValueError(
                "profile-likelihood needs a template strategy (add [template] to the spec)"
            )
        cl = data.confidence_level if data is not None else 0.6827
        if isinstance(templates, LikelihoodTemplates):
            self.setup_likelihood(templates, templates.likelihood(), confidence_level=cl)
            return
        self.setup(templates, templates.workspace(None), confidence_level=cl)

    def predict(self, events: Events) -> IntervalResult:
        """Score and bin the PE's events, fit, and return the profile-likelihood interval."""
        if self.templates is None:
            raise RuntimeError("profile-likelihood: predict() called before fit()")
        t0 = time.perf_counter()
        observations = self.templates.observations(events)
        t1 = time.perf_counter()
        channels = self.channels
        missing = [c for c in channels if c not in observations]
        if missing:
            raise KeyError(f"profile-likelihood: observations lack channel(s) {missing}")
        counts = np.concatenate([np.asarray(observations[c], dtype=float) for c in channels])
        result = self.fit_counts(counts)
        result.info["timings"]["observations"] = t1 - t0
        result.info["timings"]["total"] = time.perf_counter() - t0
        return result


@hookimpl
def register_intervals(register):
    register("profile-likelihood", ProfileLikelihood, params=ProfileParams)


__all__ = ["ProfileLikelihood", "ProfileParams", "register_intervals"]
