"""workbench.data.derived against the public dataset's stored DER_ columns and the reference code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data.derived import compute_derived
from workbench.data.schema import DERIVED, PRIMARY, UNDEFINED

DER_data = pytest.importorskip("HiggsML.derived_quantities").DER_data

MASSES = {
    # DER feature -> the transverse momenta whose squares set its float32 error scale
    "DER_mass_transverse_met_lep": ("PRI_met", "PRI_lep_pt"),
    "DER_mass_vis": ("PRI_lep_pt", "PRI_had_pt"),
    "DER_mass_jet_jet": ("PRI_jet_leading_pt", "PRI_jet_subleading_pt"),
}


def reference_der(primaries, dtype=np.float64) -> pd.DataFrame:
    return DER_data(pd.DataFrame({k: np.asarray(primaries[k], dtype=dtype) for k in PRIMARY}))


def assert_close(ours, ref, name, atol=1e-3, rtol=1e-5):
    a, b = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    tol = np.maximum(atol, rtol * np.abs(b))
    bad = ~(np.abs(a - b) <= tol)
    assert not bad.any(), (
        f"{name}: {int(bad.sum())} values differ, worst {np.abs(a - b)[bad].max():.3g}"
    )


def test_matches_stored_der_columns(reference_columns):
    """The sample's DER_ columns were computed in float32; masses near zero lose digits there.

    For the three masses we compare m^2 to within float32 error of the squared momenta
    that cancel (|dm^2| <= 32 eps32 (sum pT cosh eta)^2, bounded here by pT sums with a
    generous factor); everything else to 1e-3 absolute / 1e-5 relative.
    """
    ours = compute_derived({k: reference_columns[k] for k in PRIMARY})
    eps32 = np.finfo(np.float32).eps
    for name in DERIVED:
        stored = reference_columns[name]
        if name in MASSES:
            defined = stored != UNDEFINED
            np.testing.assert_array_equal(ours[name][~defined], stored[~defined])
            cosh = {
                "PRI_met": 1.0,
                "PRI_lep_pt": np.cosh(reference_columns["PRI_lep_eta"]),
                "PRI_had_pt": np.cosh(reference_columns["PRI_had_eta"]),
                "PRI_jet_leading_pt": np.cosh(reference_columns["PRI_jet_leading_eta"]),
                "PRI_jet_subleading_pt": np.cosh(reference_columns["PRI_jet_subleading_eta"]),
            }
            scale = sum(np.abs(reference_columns[p]) * cosh[p] for p in MASSES[name]) ** 2
            dm2 = np.abs(ours[name].astype(np.float64) ** 2 - stored.astype(np.float64) ** 2)
            assert np.all(dm2[defined] <= 32 * eps32 * scale[defined] + 1e-6), name
        else:
            assert_close(ours[name], stored, name)


@pytest.mark.parametrize("source", ["reference_sample", "generated_events"])
def test_matches_reference_code_in_double_precision(source, request):
    events = request.getfixturevalue(source)
    primaries = {k: events[k] for k in PRIMARY}
    ours = compute_derived(primaries)
    ref = reference_der(primaries)
    for name in DERIVED:
        assert_close(ours[name], ref[name], name, atol=1e-5, rtol=1e-6)
        assert ours[name].dtype == np.float32


def test_degenerate_angles_and_missing_jets():
    """Corner cases of the two centralities and of undefined jets, against the reference."""
    n = 6
    p = {k: np.full(n, UNDEFINED) for k in PRIMARY}
    p.update(
        PRI_lep_pt=np.full(n, 30.0), PRI_lep_eta=np.array([0.0, 0.5, 1.0, -1.0, 0.2, 0.0]),
        PRI_lep_phi=np.array([1.0, 1.0, 0.0, 2.0, -3.0, 3.1]),
        PRI_had_pt=np.full(n, 40.0), PRI_had_eta=np.zeros(n),
        PRI_had_phi=np.array([1.0, 1.0 + np.pi, 0.0, -2.0, 3.0, -3.1]),
        PRI_met=np.array([10.0, 0.0, 5.0, 20.0, 1.0, 3.0]),
        PRI_met_phi=np.array([1.0, 1.0, 0.0, 0.5, 0.0, 3.14]),
        PRI_n_jets=np.array([0.0, 1.0, 2.0, 2.0, 3.0, 2.0]),
        PRI_jet_all_pt=np.array([0.0, 50.0, 90.0, 100.0, 130.0, 70.0]),
    )
    has1, has2 = p["PRI_n_jets"] >= 1, p["PRI_n_jets"] >= 2
    p["PRI_jet_leading_pt"] = np.where(has1, 50.0, UNDEFINED)
    p["PRI_jet_leading_eta"] = np.where(has1, np.array([0, 1.0, 1.5, 0.7, -2.0, 0.3]), UNDEFINED)
    p["PRI_jet_leading_phi"] = np.where(has1, 0.3, UNDEFINED)
    p["PRI_jet_subleading_pt"] = np.where(has2, 40.0, UNDEFINED)
    # equal jet etas in event 2 hit the epsilon branch of the lepton centrality
    p["PRI_jet_subleading_eta"] = np.where(has2, np.array([0, 0, 1.5, -0.7, 2.0, 0.3]), UNDEFINED)
    p["PRI_jet_subleading_phi"] = np.where(has2, -2.0, UNDEFINED)
    ours = compute_derived(p)
    ref = reference_der(p)
    for name in DERIVED:
        assert_close(ours[name], ref[name], name, atol=1e-5, rtol=1e-6)
    assert np.all(ours["DER_mass_jet_jet"][~has2] == UNDEFINED)
    assert np.all(np.abs(ours["DER_met_phi_centrality"]) <= np.sqrt(2) + 1e-6)


def test_cos_sin_matches_numpy_to_float64_precision():
    """The half-angle-tangent unit vectors against np.cos / np.sin (independent libm path)."""
    from workbench.data.derived import unit_vectors

    rng = np.random.default_rng(3)
    grid = np.arange(-3142, 3143) / 1000.0
    phi = np.concatenate([
        grid, grid.astype(np.float32).astype(np.float64),  # 3-decimal values, both storages
        rng.uniform(-np.pi, np.pi, 50_000),  # arbitrary float64 angles
        [UNDEFINED, 0.0, np.pi, -np.pi, 2 * np.pi, 1e-300, 40.0, -1000.0],
    ])
    cos, sin, tan = (np.empty_like(phi) for _ in range(3))
    unit_vectors(phi, cos, sin, tan)
    assert np.abs(cos - np.cos(phi)).max() < 1e-15
    assert np.abs(sin - np.sin(phi)).max() < 1e-15


def test_arbitrary_float64_inputs_across_blocks():
    """Not 3-decimal, not float32-representable, more events than one block: against
    the reference in double precision, and block-independent."""
    from workbench.data.derived import BLOCK

    rng = np.random.default_rng(11)
    n = 2 * BLOCK + 321
    n_jets = rng.integers(0, 4, n).astype(np.float64)
    p = {
        "PRI_lep_pt": rng.uniform(20, 200, n), "PRI_lep_eta": rng.uniform(-2.5, 2.5, n),
        "PRI_lep_phi": rng.uniform(-np.pi, np.pi, n), "PRI_had_pt": rng.uniform(20, 300, n),
        "PRI_had_eta": rng.uniform(-2.5, 2.5, n), "PRI_had_phi": rng.uniform(-np.pi, np.pi, n),
        "PRI_met": rng.exponential(30, n), "PRI_met_phi": rng.uniform(-np.pi, np.pi, n),
        "PRI_n_jets": n_jets, "PRI_jet_all_pt": rng.uniform(30, 500, n),
    }
    for slot, k in (("leading", 1), ("subleading", 2)):
        present = n_jets >= k
        p[f"PRI_jet_{slot}_pt"] = np.where(present, rng.uniform(26, 250, n), UNDEFINED)
        p[f"PRI_jet_{slot}_eta"] = np.where(present, rng.uniform(-4.5, 4.5, n), UNDEFINED)
        p[f"PRI_jet_{slot}_phi"] = np.where(present, rng.uniform(-np.pi, np.pi, n), UNDEFINED)
    # near-collinear lepton/tau pairs: small masses and delta R, where cancellation bites
    near = rng.uniform(size=n) < 0.05
    p["PRI_had_phi"][near] = p["PRI_lep_phi"][near] + rng.normal(0, 1e-3, near.sum())
    p["PRI_had_eta"][near] = p["PRI_lep_eta"][near] + rng.normal(0, 1e-3, near.sum())
    ours = compute_derived(p)
    ref = reference_der(p)
    for name in DERIVED:
        assert_close(ours[name], ref[name], name, atol=1e-5, rtol=1e-6)
    cut = BLOCK // 2 + 7  # other block boundaries, same numbers
    parts = [compute_derived({k: v[sl] for k, v in p.items()})
             for sl in (slice(0, cut), slice(cut, n))]
    for name in DERIVED:
        np.testing.assert_array_equal(ours[name], np.concatenate([q[name] for q in parts]))


def test_placeholder_jets_in_two_jet_events():
    """n_jets >= 2 with -25 jet(s) left by the 26 GeV threshold: as the reference."""
    n = 4
    p = {k: np.full(n, UNDEFINED) for k in PRIMARY}
    p.update(
        PRI_lep_pt=np.full(n, 30.0), PRI_lep_eta=np.array([0.1, -1.2, 2.0, 0.0]),
        PRI_lep_phi=np.array([0.3, -2.0, 3.1, 1.0]), PRI_had_pt=np.full(n, 40.0),
        PRI_had_eta=np.array([0.5, 0.2, -1.0, 0.0]), PRI_had_phi=np.array([-1.0, 2.5, -3.1, 1.0]),
        PRI_met=np.array([20.0, 5.0, 50.0, 10.0]), PRI_met_phi=np.array([2.0, 0.1, -0.5, 1.0]),
        PRI_n_jets=np.array([2.0, 2.0, 3.0, 2.0]),
        PRI_jet_all_pt=np.array([60.0, 0.0, 80.0, 50.0]),
        PRI_jet_leading_pt=np.array([UNDEFINED, 45.0, UNDEFINED, 50.0]),
        PRI_jet_leading_eta=np.array([UNDEFINED, 1.0, UNDEFINED, 0.0]),
        PRI_jet_leading_phi=np.array([UNDEFINED, 0.5, UNDEFINED, 1.0]),
    )
    ours = compute_derived(p)
    ref = reference_der(p)
    for name in DERIVED:
        assert_close(ours[name], ref[name], name, atol=1e-5, rtol=1e-6)
