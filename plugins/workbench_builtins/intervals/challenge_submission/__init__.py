"""Built-in interval strategy ``challenge-submission``: run an unmodified HiggsML
Uncertainty Challenge submission (a folder with ``model.py``, ``class Model``).

See :mod:`.strategy` for the strategy, :mod:`.frames` for what the submission is
handed (training set, pseudo-experiments, ``systematics``), :mod:`.isolation` for
how its modules are kept apart and :mod:`.remote` for in-process evaluation.
pandas is needed at run time only (``pip install 'fair-workbench[challenge]'``).
"""

from __future__ import annotations

from workbench import hookimpl

from .strategy import ChallengeSubmission, SubmissionError, SubmissionParams


@hookimpl
def register_intervals(register):
    register("challenge-submission", ChallengeSubmission, params=SubmissionParams)


__all__ = ["ChallengeSubmission", "SubmissionError", "SubmissionParams", "register_intervals"]
