"""The challenge score: interval width and coverage combined into one number.

Follows the scoring program of the FAIR Universe HiggsML Uncertainty Challenge:
``score = -ln((w + eps) * f(c))`` with ``w`` the mean interval width, ``c`` the
pooled coverage and ``f`` a penalty that is 1 inside 0.6827 +- 2 sigma68 and
grows as the 4th (under-coverage) or 3rd (over-coverage) power outside.  The
scoring program uses ``eps = 1e-3``; the paper writes ``1e-2``, hence a setting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ONE_SIGMA = 0.6827
DEFAULT_EPS = 1e-3


def coverage_penalty(coverage: float, n: int, one_sigma: float = ONE_SIGMA) -> float:
    """f(c): 1 inside the +-2 sigma68 band, a steep polynomial outside it."""
    if n <= 0:
        raise ValueError("coverage penalty needs at least one pseudo-experiment")
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
        raise ValueError(
            f"mu_true, mu16, mu84 must have equal lengths, got "
            f"{len(mu_true)}, {len(mu16)}, {len(mu84)}"
        )
    n = len(mu_true)
    if n == 0:
        raise ValueError("nothing to score: no pseudo-experiments")
    if np.any(mu16 > mu84):
        bad = int(np.flatnonzero(mu16 > mu84)[0])
        raise ValueError(f"interval {bad} has mu16 > mu84 ({mu16[bad]} > {mu84[bad]})")
    mu_hat = 0.5 * (mu16 + mu84) if mu_hat is None else np.asarray(mu_hat, float).ravel()
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
    return Score(
        n=n,
        width=width,
        coverage=cov,
        coverage_low=float(one_sigma - 2 * sigma68),
        coverage_high=float(one_sigma + 2 * sigma68),
        penalty=pen,
        score=float(-np.log((width + eps) * pen)),
        rmse=rmse,
        mae=mae,
        eps=eps,
    )
