"""Pseudo-experiment sampling: Poisson yields per process, determinism, NP draw order."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data.events import SchemaError
from workbench.data.schema import FEATURES, PROCESSES
from workbench.pseudo_experiments import (
    draw_pseudo_experiment,
    process_norms,
    sample_pseudo_experiment,
)
from workbench.systematics.engine import apply_systematics
from workbench.systematics.nuisance import NP_NAMES, NuisanceParameters

TARGET = 60_000.0
"""Total expected pool yield used in these tests (keeps each PE small and fast)."""


@pytest.fixture(scope="module")
def pool(generated_events):
    """The 20k generated events with a row id and weights scaled to TARGET in total."""
    w = generated_events.weights * (TARGET / generated_events.weights.sum())
    return generated_events.with_columns(weights=w, row=np.arange(len(w)))


def expected_yields(pool, mu, nps):
    """Closed form: sum over pool events passing the selection of norm_process x weight.

    With soft_met = 0 the selection of a copy depends only on its pool row, so the
    passing rows come from applying the same systematics to the pool itself.
    """
    passed = apply_systematics(pool, NuisanceParameters(tes=nps.tes, jes=nps.jes))
    rows = passed["row"].astype(np.int64)
    lam = process_norms(mu, nps)[pool.process[rows]] * pool.weights[rows]
    return np.bincount(pool.process[rows], weights=lam, minlength=len(PROCESSES))


@pytest.mark.parametrize(
    "mu,nps",
    [
        (1.0, NuisanceParameters()),
        (2.5, NuisanceParameters(tes=0.97, jes=1.03, ttbar_scale=1.2, diboson_scale=2.0,
                                 bkg_scale=0.99)),
        (0.2, NuisanceParameters(tes=1.05, jes=0.95, diboson_scale=0.0)),
    ],
)
def test_yields_per_process_match_poisson_means(pool, mu, nps):
    pe = sample_pseudo_experiment(pool, mu, nps, seed=11)
    observed = np.bincount(pe.process, minlength=len(PROCESSES))
    expected = expected_yields(pool, mu, nps)
    for i, name in enumerate(PROCESSES):
        sigma = np.sqrt(max(expected[i], 1.0))
        assert abs(observed[i] - expected[i]) <= 5 * sigma, (name, observed[i], expected[i])
    if nps.diboson_scale == 0.0:
        assert observed[PROCESSES.index("diboson")] == 0


def test_copies_per_row_are_poisson(pool):
    """Mean and variance of the copy count per row both equal its Poisson mean."""
    mu, nps = 1.0, NuisanceParameters()
    passed = apply_systematics(pool, nps)["row"].astype(np.int64)
    lam = process_norms(mu, nps)[pool.process] * pool.weights
    counts = np.zeros((8, len(pool)))
    for k in range(8):
        pe = sample_pseudo_experiment(pool, mu, nps, seed=100 + k)
        counts[k] = np.bincount(pe["row"].astype(np.int64), minlength=len(pool))
    # rows failing the selection never appear, passing ones get Poisson(lam) copies
    failed = np.setdiff1d(np.arange(len(pool)), passed)
    assert counts[:, failed].sum() == 0
    z = (counts[:, passed].sum(axis=0) - 8 * lam[passed]).sum() / np.sqrt(8 * lam[passed].sum())
    assert abs(z) < 5
    resid = ((counts[:, passed] - lam[passed]) ** 2).sum() / (8 * lam[passed].sum())
    assert 0.9 < resid < 1.1  # variance / mean of a Poisson is 1


def test_output_is_shuffled_labelled_and_unit_weighted(pool):
    pe = sample_pseudo_experiment(pool, 1.0, NuisanceParameters(soft_met=1.0), seed=5)
    assert pe.is_labelled
    np.testing.assert_array_equal(pe.weights, np.ones(len(pe)))
    assert set(FEATURES) <= set(pe.fields)
    rows = pe["row"]
    # repeated rows are not kept together and the order is not the pool's
    assert np.mean(np.diff(rows) == 0) < 0.01
    assert np.mean(np.diff(rows) > 0) < 0.6
    # truth stays attached to the right row
    np.testing.assert_array_equal(pe.process, pool.process[rows.astype(np.int64)])


def test_same_seed_same_pe_and_different_seeds_differ(pool):
    nps = NuisanceParameters(tes=1.01, jes=0.99, soft_met=2.0)
    a = sample_pseudo_experiment(pool, 1.3, nps, seed=21)
    b = sample_pseudo_experiment(pool, 1.3, nps, seed=21)
    c = sample_pseudo_experiment(pool, 1.3, nps, seed=22)
    for name in a.fields:
        np.testing.assert_array_equal(a[name], b[name])
    assert len(a) != len(c) or not np.array_equal(a["PRI_met"], c["PRI_met"])


def test_soft_met_smearing_differs_between_seeds(pool):
    """Each seed gets its own smearing (the reference reuses seed 31415 for every PE)."""
    nps = NuisanceParameters(soft_met=3.0)
    a = sample_pseudo_experiment(pool, 1.0, nps, seed=1)
    b = sample_pseudo_experiment(pool, 1.0, nps, seed=2)
    # MET of copies of the same pool row differ between the two PEs
    first_a = dict(zip(a["row"].tolist(), a["PRI_met"].tolist()))
    first_b = dict(zip(b["row"].tolist(), b["PRI_met"].tolist()))
    common = sorted(set(first_a) & set(first_b))[:500]
    diffs = np.array([first_a[r] - first_b[r] for r in common])
    assert np.mean(np.abs(diffs) > 1e-3) > 0.9


def test_nuisance_draw_order_matches_reference_sequence(pool):
    seed = 4242
    rs = np.random.RandomState(seed)
    expected = {
        "tes": np.clip(rs.normal(1.0, 0.01), 0.9, 1.1),
        "jes": np.clip(rs.normal(1.0, 0.01), 0.9, 1.1),
        "soft_met": np.clip(rs.lognormal(0.0, 1.0), 0.0, 5.0),
        "ttbar_scale": np.clip(rs.normal(1.0, 0.02), 0.8, 1.2),
        "diboson_scale": np.clip(rs.normal(1.0, 0.25), 0.0, 2.0),
        "bkg_scale": np.clip(rs.normal(1.0, 0.001), 0.99, 1.01),
    }
    pe, nps = draw_pseudo_experiment(pool, 1.0, seed)
    assert nps.as_dict() == {k: float(v) for k, v in expected.items()}
    same = sample_pseudo_experiment(pool, 1.0, nps, seed)
    np.testing.assert_array_equal(pe["PRI_met"], same["PRI_met"])

    # fixed NPs consume no draw: soft_met and bkg only -> the first two draws of the stream
    rs = np.random.RandomState(seed)
    soft = np.clip(rs.lognormal(0.0, 1.0), 0.0, 5.0)
    bkg = np.clip(rs.normal(1.0, 0.001), 0.99, 1.01)
    _, nps = draw_pseudo_experiment(pool, 1.0, seed, randomise=("bkg_scale", "soft_met"))
    assert (nps.soft_met, nps.bkg_scale) == (soft, bkg)
    assert nps.replace(soft_met=0.0, bkg_scale=1.0) == NuisanceParameters()
    assert set(NP_NAMES) == set(expected)


def test_errors(pool):
    with pytest.raises(SchemaError, match="process"):
        sample_pseudo_experiment(pool.without_truth(), 1.0, NuisanceParameters(), seed=0)
    with pytest.raises(ValueError, match="mu"):
        sample_pseudo_experiment(pool, -1.0, NuisanceParameters(), seed=0)
    with pytest.raises(ValueError, match="ttbar_scale"):
        sample_pseudo_experiment(pool, 1.0, {"ttbar_scale": 1.5}, seed=0)


def test_no_pseudo_experiment_is_empty(pool):
    from workbench.errors import PseudoExperimentError
    from workbench.pseudo_experiments import planned_pseudo_experiment

    task = {"trial": 2, "pe": 5, "seed": 1, "mu_true": 1.0,
            "nuisances_true": NuisanceParameters().as_dict()}
    # a tool drawing from an empty test pool (e.g. sampling = "generator" left it empty)
    with pytest.raises(PseudoExperimentError, match="empty pool"):
        sample_pseudo_experiment(pool[:0], 1.0, NuisanceParameters(), seed=0)
    with pytest.raises(PseudoExperimentError) as err:
        planned_pseudo_experiment(task, pool=pool[:0])
    assert str(err.value) == (
        "pseudo-experiment (trial 2, pe 5): sampling 'pool' draws from the test pool, which is "
        "empty (0 events); give data.test_pool events, or use pseudo_experiments.sampling = "
        "'generator'")
    tiny = pool[:50].with_columns(weights=np.full(50, 1e-9))
    with pytest.raises(PseudoExperimentError) as err:
        planned_pseudo_experiment(task, pool=tiny)
    assert str(err.value) == (
        "pseudo-experiment (trial 2, pe 5) has no events (sampling 'pool' from a test pool of "
        "50 events, mu_true=1); raise the pool's or the holdout's expected yields "
        "(data.luminosity_fb, the counts)")
    assert len(planned_pseudo_experiment(task, pool=pool)) > 0
