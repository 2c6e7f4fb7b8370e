"""The challenge score against the official scoring program (HiggsML package)."""

import numpy as np
import pytest

from workbench.scoring import ONE_SIGMA, coverage_penalty, score

hscore = pytest.importorskip("HiggsML.score")


def _reference():
    return hscore.Scoring()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("eps", [1e-3, 1e-2])
def test_quantile_score_matches_reference(seed, eps):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    mu = rng.uniform(0.1, 3.0, n)
    # intervals of random width and offset: spans under-, good and over-coverage
    half = rng.uniform(0.01, 1.0) * rng.uniform(0.5, 1.5, n)
    centre = mu + rng.normal(0, rng.uniform(0.05, 1.5), n)
    p16, p84 = centre - half, centre + half
    ref_w, ref_c, ref_s = _reference().Quantiles_Score(mu, p16, p84, eps=eps)
    ours = score(mu, p16, p84, eps=eps)
    assert ours.width == pytest.approx(ref_w, rel=1e-12)
    assert ours.coverage == pytest.approx(ref_c, rel=1e-12)
    assert ours.score == pytest.approx(ref_s, rel=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_rmse_mae_match_reference_per_pe(seed):
    rng = np.random.default_rng(100 + seed)
    n = 50
    mu = rng.uniform(0.1, 3.0, n)
    mu_hat = mu + rng.normal(0, 0.3, n)
    delta = rng.uniform(0.05, 0.5, n)
    ref = _reference()
    ref_rmse = np.mean([ref.RMSE_score(m, mh, d) for m, mh, d in zip(mu, mu_hat, delta)])
    ref_mae = np.mean([ref.MAE_score(m, mh, d) for m, mh, d in zip(mu, mu_hat, delta)])
    ours = score(mu, mu_hat - delta, mu_hat + delta, mu_hat, delta)
    assert ours.rmse == pytest.approx(ref_rmse, rel=1e-12)
    assert ours.mae == pytest.approx(ref_mae, rel=1e-12)


def test_penalty_is_one_inside_band_and_grows_outside():
    n = 100
    s68 = np.sqrt(ONE_SIGMA * (1 - ONE_SIGMA) / n)
    assert coverage_penalty(ONE_SIGMA, n) == 1.0
    assert coverage_penalty(ONE_SIGMA + 1.99 * s68, n) == 1.0
    below = [coverage_penalty(ONE_SIGMA - k * s68, n) for k in (2.5, 3, 4, 6)]
    above = [coverage_penalty(ONE_SIGMA + k * s68, n) for k in (2.5, 3)]
    assert all(b > 1 for b in below + above)
    assert below == sorted(below)
    # under-coverage is punished harder (4th power) than over-coverage (3rd power)
    assert coverage_penalty(ONE_SIGMA - 4 * s68, n) > coverage_penalty(ONE_SIGMA + 4 * s68, n)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="equal lengths"):
        score([1.0, 2.0], [0.5], [1.5])
    with pytest.raises(ValueError, match="mu16 > mu84"):
        score([1.0], [2.0], [1.5])
    with pytest.raises(ValueError, match="no pseudo-experiments"):
        score([], [], [])


def test_non_finite_values_are_rejected_naming_the_pe():
    from workbench.errors import ScoreError
    from workbench.scoring import score_records

    with pytest.raises(ScoreError, match="interval 1 has a non-finite mu16"):
        score([1.0, 1.0], [0.5, np.nan], [1.5, 1.5])
    with pytest.raises(ScoreError, match="interval 0 has a non-finite mu_hat"):
        score([1.0], [0.5], [1.5], [np.inf])
    rows = [{"trial": 3, "pe": 7, "mu_true": 1.0, "mu16": 0.5, "mu84": np.inf, "mu_hat": 1.0}]
    with pytest.raises(ScoreError, match=r"^f\.json: trial 3, pe 7 \(record 0\): mu84 = inf "):
        score_records(rows, "f.json")
    ok = {"trial": 0, "pe": 0, "mu_true": 1.0, "mu16": 0.5, "mu84": 1.5, "mu_hat": 1.0}
    assert score_records([ok, {"error": "x"}]).n == 1
