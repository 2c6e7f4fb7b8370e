"""The challenge score: interval width and coverage combined into one number.

Follows the scoring program of the FAIR Universe HiggsML Uncertainty Challenge:
``score = -ln((w + eps) * f(c))`` with ``w`` the mean interval width, ``c`` the
pooled coverage and ``f`` a penalty that is 1 inside 0.6827 +- 2 sigma68 and
grows as the 4th (under-coverage) or 3rd (over-coverage) power outside.  The
scoring program uses ``eps = 1e-3``; the paper writes ``1e-2``, hence a setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from workbench.errors import ScoreError

ONE_SIGMA = 0.6827
DEFAULT_EPS = 1e-3


def coverage_penalty(coverage: float, n: int, one_sigma: float = ONE_SIGMA) -> float:
    """f(c): 1 inside the +-2 sigma68 band, a steep polynomial outside it."""
    if n <= 0:
        raise ScoreError("coverage penalty needs at least one pseudo-experiment")
    sigma68 = np.sqrt(one_sigma * (1.0 - one_sigma) / n)
    lo, hi = one_sigma - 2.0 * sigma68, one_sigma + 2.0 * sigma68
    if coverage < lo:
        return float(1.0 + abs((coverage - lo) / sigma68) ** 4)
    if coverage > hi:
        return float(1.0 + abs((coverage - hi) / sigma68) ** 3)
    return 1.0


@dataclass(frozen=True)
class Score:
    n: int
    width: float
    coverage: float
    coverage_low: float
    coverage_high: float
    penalty: float
    score: float
    rmse: float
    mae: float
    eps: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def score(
    mu_true,
    mu16,
    mu84,
    mu_hat=None,
    delta_mu_hat=None,
    *,
    eps: float = DEFAULT_EPS,
    one_sigma: float = ONE_SIGMA,
) -> Score:
    """Score pooled pseudo-experiments (arrays of equal length).

    RMSE/MAE follow the scoring program: per pseudo-experiment
    ``sqrt(e^2 + (e^2 - d^2)^2)`` and ``|e| + ||e| - d|`` with ``e = mu_hat - mu``
    and ``d`` the reported uncertainty (half the interval unless given), averaged.
    """
    mu_true, mu16, mu84 = (np.asarray(a, dtype=float).ravel() for a in (mu_true, mu16, mu84))
    if not (len(mu_true) == len(mu16) == len(mu84)):
        raise ScoreError(
            f"mu_true, mu16, mu84 must have equal lengths, got "
            f"{len(mu_true)}, {len(mu16)}, {len(mu84)}"
        )
    n = len(mu_true)
    if n == 0:
        raise ScoreError("nothing to score: no pseudo-experiments")
    mu_hat = 0.5 * (mu16 + mu84) if mu_hat is None else np.asarray(mu_hat, float).ravel()
    for name, values in (("mu_true", mu_true), ("mu16", mu16), ("mu84", mu84),
                         ("mu_hat", mu_hat)):
        if not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ScoreError(f"interval {bad} has a non-finite {name} ({values[bad]})")
    if np.any(mu16 > mu84):
        bad = int(np.flatnonzero(mu16 > mu84)[0])
        raise ScoreError(f"interval {bad} has mu16 > mu84 ({mu16[bad]} > {mu84[bad]})")
    width = float(np.mean(np.abs(mu84 - mu16)))
    inside = (mu_true >= mu16) & (mu_true <= mu84)
    cov = float(np.mean(inside))
    sigma68 = np.sqrt(one_sigma * (1.0 - one_sigma) / n)
    pen = coverage_penalty(cov, n, one_sigma)
    if delta_mu_hat is None:
        delta = 0.5 * np.abs(mu84 - mu16)
    else:
        delta = np.asarray(delta_mu_hat, float).ravel()
    err = mu_hat - mu_true
    rmse = float(np.mean(np.sqrt(err**2 + (err**2 - delta**2) ** 2)))
    mae = float(np.mean(np.abs(err) + np.abs(np.abs(err) - delta)))
    with np.errstate(divide="ignore"):  # zero widths with eps = 0: an infinite score
        value = float(-np.log((width + eps) * pen))
    return Score(
        n=n,
        width=width,
        coverage=cov,
        coverage_low=float(one_sigma - 2 * sigma68),
        coverage_high=float(one_sigma + 2 * sigma68),
        penalty=pen,
        score=value,
        rmse=rmse,
        mae=mae,
        eps=eps,
    )


SCORED_KEYS = ("mu_true", "mu16", "mu84", "mu_hat")


def check_records(records: Sequence[Any], source: str = "results") -> list[dict[str, Any]]:
    """The PE records to score (those without ``error``), validated one by one.

    Raises :class:`workbench.errors.ScoreError` naming ``source`` and the trial
    and PE of the first record with a missing or non-finite value, or with
    ``mu16 > mu84``; or when nothing is left to score.
    """
    ok = []
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ScoreError(f"{source}: pseudo-experiment record {i} is not a JSON object")
        if "error" in r:
            continue
        where = f"{source}: trial {r.get('trial', '?')}, pe {r.get('pe', '?')} (record {i})"
        values = {}
        for key in SCORED_KEYS:
            if key not in r:
                raise ScoreError(f"{where} has no {key!r}")
            v = r[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ScoreError(f"{where}: {key} = {v!r} is not a number")
            if not np.isfinite(v):
                raise ScoreError(f"{where}: {key} = {v} is not finite; fix or drop that record")
            values[key] = float(v)
        if values["mu16"] > values["mu84"]:
            raise ScoreError(f"{where}: mu16 = {values['mu16']} > mu84 = {values['mu84']}")
        ok.append(r)
    if not ok:
        failed = len(records)
        raise ScoreError(f"{source}: nothing to score: "
                         + (f"all {failed} pseudo-experiments failed" if failed
                            else "no pseudo-experiments"))
    return ok


def score_records(records: Sequence[Any], source: str = "results", *,
                  eps: float = DEFAULT_EPS, one_sigma: float = ONE_SIGMA) -> Score:
    """:func:`score` of the records that did not fail, after :func:`check_records`."""
    ok = check_records(records, source)
    return score([r["mu_true"] for r in ok], [r["mu16"] for r in ok], [r["mu84"] for r in ok],
                 [r["mu_hat"] for r in ok], eps=eps, one_sigma=one_sigma)


def flag_warnings(summary: dict[str, Any]) -> list[str]:
    """One sentence per flag a run's summary counts (``n_degenerate``, ``n_at_bounds``;
    see :data:`workbench.pipeline.FLAGS`), for the log and the report."""
    n_ok = int(summary.get("n_pseudo_experiments", 0)) - int(summary.get("n_failed", 0))
    out = []
    if summary.get("n_degenerate"):
        out.append(f"{summary['n_degenerate']} of {n_ok} intervals come from degenerate "
                   "templates (empty or all-zero): they measure nothing and their coverage "
                   "means nothing; give the holdout more events or use fewer bins")
    if summary.get("n_at_bounds"):
        out.append(f"{summary['n_at_bounds']} of {n_ok} intervals end at a bound of the fit's "
                   "parameter range, not where the likelihood puts them: their coverage is "
                   "not trustworthy")
    return out
