"""The systematics engine against the reference package and closed-form expectations.

Oracle: ``HiggsML.systematics.systematics`` 0.1.5 (pandas).  It evaluates its
formulas in the dtype of its input.  Given float64 input it computes in double
precision as we do, and must then agree with us to 1e-3 absolute (1e-5 relative
where larger) on every feature of the same surviving events.  Given the
dataset's float32 it rounds float32 products to 3 decimals, so values within
float32 error (~1e-5 GeV) of a rounding midpoint may land one step (1e-3) away
from ours; those tests check that this is the only kind of difference and that
its rate stays small.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from toys import reference_frame

from workbench.data.derived import compute_derived
from workbench.data.events import Events, SchemaError
from workbench.data.schema import DERIVED, FEATURES, PRIMARY, UNDEFINED
from workbench.systematics.engine import (
    apply_systematics,
    apply_weight_scales,
    weight_scale_factors,
)
from workbench.systematics.nuisance import NuisanceParameters

HiggsML_systematics = pytest.importorskip("HiggsML.systematics")
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")  # pandas 3 vs HiggsML

SCALES = (0.9, 0.97, 1.0, 1.03, 1.1)
SOFT = (0.0, 0.5, 3.0)
GRID = list(itertools.product(SCALES, SCALES, SOFT))
SEED = 7


def run_reference(events: Events, tes, jes, soft_met, seed=SEED, dtype=np.float64):
    return HiggsML_systematics.systematics(
        data_set=reference_frame(events, dtype), tes=tes, jes=jes, soft_met=soft_met, seed=seed
    )


def feature_mismatches(ours: Events, ref, names=FEATURES) -> dict[str, int]:
    """Number of values per feature outside 1e-3 abs / 1e-5 rel of the reference."""
    bad = {}
    for name in names:
        a = ours[name].astype(np.float64)
        b = ref[name].to_numpy(dtype=np.float64)
        tol = np.maximum(1e-3, 1e-5 * np.abs(b))
        n_bad = int(np.count_nonzero(~(np.abs(a - b) <= tol)))
        if n_bad:
            bad[name] = n_bad
    return bad


def check_survivors(events: Events, ours: Events, ref) -> None:
    ids = ref["event_id"].to_numpy()
    assert len(ours) == len(ids), f"{len(ours)} survivors vs reference {len(ids)}"
    # both keep the input order, so survivors line up row by row
    np.testing.assert_array_equal(ours["PRI_n_jets"], ref["PRI_n_jets"].to_numpy())
    np.testing.assert_array_equal(ours.process, events.process[ids])
    np.testing.assert_array_equal(ours.weights, events.weights[ids])


# -- parity, double precision ---------------------------------------------------
def ours_and_reference(events: Events, tes, jes, soft_met):
    """Our output and the reference's (float64 input) for the same NPs and seed."""
    ours = apply_systematics(
        events, NuisanceParameters(tes=tes, jes=jes, soft_met=soft_met), seed=SEED
    )
    return ours, run_reference(events, tes, jes, soft_met)


@pytest.mark.parametrize("tes,jes,soft_met", GRID)
def test_parity_generated_grid(generated_events, tes, jes, soft_met):
    ours, ref = ours_and_reference(generated_events, tes, jes, soft_met)
    check_survivors(generated_events, ours, ref)
    assert feature_mismatches(ours, ref) == {}


@pytest.mark.parametrize("tes,jes,soft_met", [(0.97, 1.03, 1.5), (1.05, 0.92, 0.0)])
def test_derived_features_as_precise_as_the_reference_double(generated_events, tes, jes,
                                                            soft_met):
    """DER_ from the 3-decimal float64 primaries, as the reference's float64 mode:
    within 1e-5 x max(|x|, 1) (float32 storage and the cancellation-free formulas;
    computed from the float32-stored angles instead, transverse masses and the MET
    centrality would be up to ~6e-5 away)."""
    ours, ref = ours_and_reference(generated_events, tes, jes, soft_met)
    for name in DERIVED:
        a, b = ours[name].astype(np.float64), ref[name].to_numpy(dtype=np.float64)
        worst = np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0))
        assert worst < 1e-5, (name, worst)


@pytest.mark.parametrize("tes,jes,soft_met", [(1.0, 1.0, 0.0), (0.9, 1.1, 0.5), (1.1, 0.9, 3.0)])
def test_parity_reference_sample(reference_sample, tes, jes, soft_met):
    ours, ref = ours_and_reference(reference_sample, tes, jes, soft_met)
    check_survivors(reference_sample, ours, ref)
    assert feature_mismatches(ours, ref) == {}


def test_grid_moves_objects_across_thresholds(generated_events):
    """Guard: the parity grid really exercises the 26 GeV cuts in both directions."""
    lo = apply_systematics(generated_events, NuisanceParameters(tes=0.9, jes=0.9))
    hi = apply_systematics(generated_events, NuisanceParameters(tes=1.1, jes=1.1))
    nominal = apply_systematics(generated_events, NuisanceParameters())
    assert len(lo) < len(nominal) < len(hi)
    assert lo["PRI_n_jets"].sum() < nominal["PRI_n_jets"].sum() < hi["PRI_n_jets"].sum()


# -- parity, the dataset's float32 ------------------------------------------------
def _near_midpoint(x: np.ndarray) -> np.ndarray:
    """x lies within float32 error of a rounding midpoint (k + 1/2) * 1e-3."""
    thousandths = x * 1000.0
    tol = 4 * np.spacing(np.abs(thousandths).astype(np.float32)).astype(np.float64)
    return np.abs(np.abs(thousandths - np.floor(thousandths)) - 0.5) <= tol


@pytest.mark.parametrize(
    "tes,jes,soft_met", [(0.9, 1.1, 0.0), (0.97, 1.03, 0.5), (1.03, 0.97, 3.0), (1.1, 0.9, 0.0)]
)
def test_parity_float32_reference(generated_events, tes, jes, soft_met):
    """Against the reference in the dataset's float32: same survivors and jets, and every
    primary equal or one rounding step away.

    A step happens when the exact value sits on (or within float32 error of) a rounding
    midpoint.  Scaling a 3-decimal pT by 0.9 gives exact 4-decimal ties in 10% of the
    events, which float32 and float64 break differently (here a few % of the pTs);
    for the scaled columns every step must be such a midpoint.  MET is a vector sum,
    never an exact tie, so its steps come from float32 error alone and stay rare.
    """
    ours = apply_systematics(
        generated_events, NuisanceParameters(tes=tes, jes=jes, soft_met=soft_met), seed=SEED
    )
    ref = run_reference(generated_events, tes, jes, soft_met, dtype=np.float32)
    check_survivors(generated_events, ours, ref)
    ids = ref["event_id"].to_numpy()
    inputs = {n: generated_events[n][ids].astype(np.float64) for n in PRIMARY}
    midpoint_sources = {
        "PRI_had_pt": [inputs["PRI_had_pt"] * tes],
        "PRI_jet_leading_pt": [inputs["PRI_jet_leading_pt"] * jes],
        "PRI_jet_subleading_pt": [inputs["PRI_jet_subleading_pt"] * jes],
        # jet_all_pt also loses the (rounded) pT of removed jets
        "PRI_jet_all_pt": [
            inputs[f"PRI_jet_{x}_pt"] * jes for x in ("all", "leading", "subleading")
        ],
    }
    n_steps = 0
    for name in PRIMARY:
        a = ours[name].astype(np.float64)
        b = ref[name].to_numpy(dtype=np.float64)
        # float32 error scale: of the value, or of the operands where the reference
        # subtracts removed jets from jet_all_pt (leaving ~0 for events with no jet left)
        scale = np.maximum(np.abs(b), np.abs(inputs[name]))
        ulp = np.spacing(scale.astype(np.float32)).astype(np.float64)
        steps = np.rint(np.abs(a - b) / 1e-3)
        assert np.all(np.abs(np.abs(a - b) - steps * 1e-3) <= 4 * ulp), (
            f"{name}: differences other than whole rounding steps"
        )
        n_steps += int(np.count_nonzero(steps))
        if name in midpoint_sources:
            # each step needs its own rounded value sitting on a midpoint
            ties = sum(_near_midpoint(exact).astype(int) for exact in midpoint_sources[name])
            assert np.all(steps <= ties), (
                f"{name}: {int((steps > ties).sum())} differences not explained by ties"
            )
        else:
            assert steps.max() <= 1 and steps.mean() < 0.01, (
                f"{name}: {np.count_nonzero(steps)} values differ by up to {steps.max()} steps"
            )
    if tes == 0.9:
        assert n_steps > 0  # guard: the tie mechanism is really exercised


# -- closed-form behaviour ---------------------------------------------------------
def _vectors(events: Events, slots=("had", "jet_leading", "jet_subleading")):
    """Sum of MET and the given objects' transverse momenta (the conserved total)."""
    n_jets = events["PRI_n_jets"].astype(np.float64)
    x = events["PRI_met"] * np.cos(events["PRI_met_phi"].astype(np.float64))
    y = events["PRI_met"] * np.sin(events["PRI_met_phi"].astype(np.float64))
    tol = 5e-4 + 5e-4 * events["PRI_met"].astype(np.float64)
    for slot, present in zip(slots, (np.ones(len(events), bool), n_jets > 0, n_jets > 1)):
        pt = np.where(present, events[f"PRI_{slot}_pt"].astype(np.float64), 0.0)
        phi = events[f"PRI_{slot}_phi"].astype(np.float64)
        x, y = x + pt * np.cos(phi), y + pt * np.sin(phi)
        tol = tol + np.where(present, 5e-4 + 5e-4 * pt, 0.0)
    return x, y, tol


@pytest.mark.parametrize("tes,jes", [(0.9, 1.0), (1.0, 1.1), (1.07, 0.93)])
def test_met_absorbs_tau_and_jet_changes(generated_events, tes, jes):
    out = apply_systematics(
        generated_events, NuisanceParameters(tes=tes, jes=jes), thresholds=False
    )
    assert len(out) == len(generated_events)
    np.testing.assert_allclose(
        out["PRI_had_pt"], np.round(generated_events["PRI_had_pt"] * np.float64(tes), 3),
        atol=1e-4,
    )
    x0, y0, tol0 = _vectors(generated_events)
    x1, y1, tol1 = _vectors(out)
    assert np.all(np.hypot(x1 - x0, y1 - y0) <= tol0 + tol1)
    has_jet = generated_events["PRI_n_jets"] > 0
    assert not np.allclose(out["PRI_met"], generated_events["PRI_met"], atol=1e-3)
    np.testing.assert_allclose(
        out["PRI_jet_all_pt"],
        np.round(generated_events["PRI_jet_all_pt"].astype(np.float64) * jes, 3),
        atol=1e-4,
    )
    np.testing.assert_array_equal(
        out["PRI_jet_leading_pt"][~has_jet], generated_events["PRI_jet_leading_pt"][~has_jet]
    )


def test_soft_met_reproduces_reference_stream(reference_sample):
    seed, sigma = 12345, 2.5
    out = apply_systematics(
        reference_sample, NuisanceParameters(soft_met=sigma), seed=seed, thresholds=False
    )
    met = reference_sample["PRI_met"].astype(np.float64)
    phi = reference_sample["PRI_met_phi"].astype(np.float64)

    def expected(s):
        rs = np.random.RandomState(s)
        dx = rs.normal(0, sigma, size=len(met))
        dy = rs.normal(0, sigma, size=len(met))
        x, y = met * np.cos(phi) + dx, met * np.sin(phi) + dy
        return np.round(np.hypot(x, y), 3), np.round(np.arctan2(y, x), 3)

    exp_met, exp_phi = expected(seed)
    np.testing.assert_allclose(out["PRI_met"], exp_met, atol=1.1e-3)
    np.testing.assert_allclose(out["PRI_met_phi"], exp_phi, atol=1.1e-3)
    other_met, _ = expected(seed + 1)
    assert not np.allclose(out["PRI_met"], other_met, atol=1.1e-3)
    # the draw covers all input events, before any is dropped
    cut = apply_systematics(reference_sample, NuisanceParameters(soft_met=sigma), seed=seed)
    ref = run_reference(reference_sample, 1.0, 1.0, sigma, seed=seed)
    np.testing.assert_array_equal(cut["PRI_met"], out["PRI_met"][ref["event_id"].to_numpy()])


def test_same_seed_same_output_and_input_untouched(reference_sample):
    before = {k: v.copy() for k, v in reference_sample.columns().items()}
    nps = NuisanceParameters(tes=1.05, jes=0.95, soft_met=1.0, ttbar_scale=1.1)
    a = apply_systematics(reference_sample, nps, seed=3)
    b = apply_systematics(reference_sample, nps, seed=3)
    c = apply_systematics(reference_sample, nps, seed=4)
    for name in a.fields:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["PRI_met"], c["PRI_met"])
    for name, col in before.items():
        np.testing.assert_array_equal(reference_sample[name], col)


def _hand_events(**overrides) -> Events:
    """Three events around the thresholds; DER filled from the primaries."""
    base = {
        "PRI_lep_pt": [30.0, 30.0, 30.0], "PRI_lep_eta": [0.1, 0.2, 0.3],
        "PRI_lep_phi": [0.5, 1.0, -1.0], "PRI_had_pt": [40.0, 40.0, 40.0],
        "PRI_had_eta": [0.4, -0.4, 1.0], "PRI_had_phi": [-2.0, 2.5, 2.0],
        "PRI_jet_leading_pt": [60.0, 60.0, 60.0], "PRI_jet_leading_eta": [1.0, 2.0, -1.0],
        "PRI_jet_leading_phi": [3.0, -3.0, 0.0], "PRI_jet_subleading_pt": [30.0, 30.0, 30.0],
        "PRI_jet_subleading_eta": [-1.0, 0.5, 0.2], "PRI_jet_subleading_phi": [1.5, 0.1, -0.5],
        "PRI_n_jets": [3.0, 2.0, 2.0], "PRI_jet_all_pt": [110.0, 90.0, 90.0],
        "PRI_met": [20.0, 25.0, 30.0], "PRI_met_phi": [0.3, -0.3, 1.2],
    }
    for name, values in overrides.items():
        base[name] = values
    cols = {k: np.asarray(v, dtype=np.float64) for k, v in base.items()}
    cols.update(compute_derived(cols))
    cols["detailed_labels"] = np.array(["htautau", "ztautau", "ttbar"])
    return Events.from_columns(cols)


def test_threshold_edges():
    events = _hand_events(
        PRI_had_pt=[26.0, 25.999, 40.0],
        PRI_lep_pt=[20.0, 30.0, 19.999],
        PRI_jet_subleading_pt=[26.0, 26.001, 30.0],
        PRI_jet_leading_pt=[60.0, 26.0, 60.0],
    )
    out = apply_systematics(events, NuisanceParameters())
    assert len(out) == 1  # had_pt < 26 and lep_pt < 20 dropped, the 26.0 / 20.0 kept
    assert out["PRI_jet_subleading_pt"][0] == UNDEFINED  # [0, 26] is inclusive
    assert out["PRI_jet_subleading_eta"][0] == UNDEFINED
    assert out["PRI_jet_all_pt"][0] == pytest.approx(110.0 - 26.0)
    # n_jets counts every jet: 3 -> 2 although only the leading one is stored now.
    # This is the reference's behaviour (its two-jet DER_ features then use the -25
    # placeholders); see docs/systematics.md.
    assert out["PRI_n_jets"][0] == 2.0
    ref = run_reference(events, 1.0, 1.0, 0.0)
    np.testing.assert_array_equal(ref["event_id"], [0])
    assert feature_mismatches(out, ref) == {}


def test_leading_removed_subleading_promoted():
    """Mis-ordered input (leading pT < subleading pT): the survivor becomes the leading jet.

    The reference leaves leading = -25 with n_jets = 1 and the subleading jet in place,
    an event no later code can read consistently; the public dataset never has it.
    """
    events = _hand_events(PRI_jet_leading_pt=[25.0, 60.0, 60.0])
    out = apply_systematics(events, NuisanceParameters())
    first = out[:1]
    assert first["PRI_n_jets"][0] == 2.0
    assert first["PRI_jet_leading_pt"][0] == 30.0
    assert first["PRI_jet_leading_phi"][0] == pytest.approx(1.5)
    assert first["PRI_jet_subleading_pt"][0] == UNDEFINED
    assert first["PRI_jet_all_pt"][0] == pytest.approx(85.0)
    # its DER_ features are those of the promoted configuration
    der = compute_derived({k: first[k] for k in PRIMARY})
    for name in DERIVED:
        np.testing.assert_allclose(first[name], der[name], rtol=1e-6, atol=1e-5)


# -- weights -------------------------------------------------------------------------
def test_weight_scales_closed_form(generated_events):
    nps = NuisanceParameters(ttbar_scale=1.2, diboson_scale=0.3, bkg_scale=1.01)
    out = apply_systematics(generated_events, nps, thresholds=False)
    w, proc = generated_events.weights, generated_events.detailed_labels
    expected = np.select(
        [proc == "htautau", proc == "ztautau", proc == "ttbar", proc == "diboson"],
        [w, 1.01 * w, 1.2 * 1.01 * w, 0.3 * 1.01 * w],
    )
    np.testing.assert_allclose(out.weights, expected, rtol=1e-12)
    sums_in, sums_out = generated_events.sum_weights(True), out.sum_weights(True)
    assert sums_out["htautau"] == pytest.approx(sums_in["htautau"])
    assert sums_out["ttbar"] == pytest.approx(1.2 * 1.01 * sums_in["ttbar"])
    # the weight-only helper gives the same weights and leaves the features alone
    only = apply_weight_scales(generated_events, nps)
    np.testing.assert_allclose(only.weights, expected, rtol=1e-12)
    np.testing.assert_array_equal(only["PRI_met"], generated_events["PRI_met"])
    np.testing.assert_allclose(weight_scale_factors(nps), [1.0, 1.01, 1.212, 0.303])


def test_reference_ignores_weight_scales(reference_sample):
    """Documents the reference quirk our engine deliberately does not share."""
    frame = reference_frame(reference_sample, np.float64)
    ref = HiggsML_systematics.systematics(data_set=frame, ttbar_scale=1.2, bkg_scale=1.01)
    np.testing.assert_array_equal(
        ref["weights"].to_numpy(), reference_sample.weights[ref["event_id"].to_numpy()]
    )


def test_unlabelled_with_weight_scales_is_an_error(reference_sample):
    bare = reference_sample.without_truth()
    with pytest.raises(SchemaError, match="process"):
        apply_systematics(bare, NuisanceParameters(diboson_scale=1.5))
    out = apply_systematics(bare, NuisanceParameters(tes=1.02))
    assert not out.is_labelled and len(out) > 0


def test_out_of_range_nps_rejected(reference_sample):
    with pytest.raises(ValueError, match="tes"):
        apply_systematics(reference_sample, {"tes": 1.2})
    with pytest.raises(KeyError, match="jse"):
        apply_systematics(reference_sample, {"jse": 1.0})


# -- block-wise engine ------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 1000, 1001])
def test_soft_met_draws_bit_identical_to_reference_calls(n):
    """One standard_normal(2n) call must equal the reference's two normal(0, s, n) calls,
    including the legacy stream's cached second gaussian when n is odd."""
    from workbench.systematics.engine import _soft_met_noise

    for seed, sigma in ((31415, 1.5), (7, 0.37)):
        rs = np.random.RandomState(seed)
        px, py = rs.normal(0, sigma, size=n), rs.normal(0, sigma, size=n)
        x, y = _soft_met_noise(seed, sigma, n)
        np.testing.assert_array_equal(x, px)
        np.testing.assert_array_equal(y, py)


def test_parity_across_blocks():
    """More events than one block, with drops in every block: the survivors' offsets,
    the soft-term stream and every feature line up with the reference."""
    from toys import jittered_events

    from workbench.data.derived import BLOCK

    events = jittered_events(2 * BLOCK + 777, seed=99)
    tes, jes, soft_met = 0.95, 1.04, 2.0
    ours = apply_systematics(
        events, NuisanceParameters(tes=tes, jes=jes, soft_met=soft_met), seed=SEED
    )
    ref = run_reference(events, tes, jes, soft_met)
    dropped = np.setdiff1d(np.arange(len(events)), ref["event_id"].to_numpy())
    assert all(np.any((dropped >= lo) & (dropped < lo + BLOCK)) for lo in (0, BLOCK, 2 * BLOCK))
    check_survivors(events, ours, ref)
    assert feature_mismatches(ours, ref) == {}
    # DER_ columns are those of the output primaries (the engine, like the reference,
    # uses the 3-decimal float64 values; the float32-stored angles differ by < 1.2e-7,
    # which moves e.g. a transverse mass by up to sqrt(met pT_lep) x 1.2e-7)
    der = compute_derived({k: ours[k] for k in PRIMARY})
    for name in DERIVED:
        np.testing.assert_allclose(ours[name], der[name], rtol=1e-5, atol=1e-4, err_msg=name)


def test_float64_and_float32_inputs_agree(generated_events):
    """systematics_columns on float64 copies of float32 columns gives the same output."""
    from workbench.systematics.engine import systematics_columns

    nps = NuisanceParameters(tes=1.06, jes=0.93, soft_met=0.8)
    cols32 = {k: generated_events[k] for k in PRIMARY}
    cols64 = {k: v.astype(np.float64) for k, v in cols32.items()}
    a, keep_a = systematics_columns(cols32, nps, seed=5)
    b, keep_b = systematics_columns(cols64, nps, seed=5)
    np.testing.assert_array_equal(keep_a, keep_b)
    for name in FEATURES:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_fast_rounding_is_float32_identical_to_np_round():
    """rint(1000 x) * 0.001 (the kernel's and the MET azimuth's rounding) and
    np.round(x, 3) agree once stored as float32, and decide the cuts alike."""
    from workbench.systematics.engine import _round_for_output
    from workbench.systematics.shifts import HAD_PT_MIN, JET_PT_MIN, LEP_PT_MIN, round3_fast_array

    k = np.arange(-4_000_000, 4_000_001, dtype=np.float64)
    x = k / 1000.0 + np.random.default_rng(1).uniform(-0.0005, 0.0005, k.size)
    exact = np.round(x, 3)
    fast = round3_fast_array(x)
    np.testing.assert_array_equal(fast.astype(np.float32), exact.astype(np.float32))
    vectorised = x.copy()
    _round_for_output(vectorised)
    np.testing.assert_array_equal(vectorised, fast)
    # ties at the thresholds: halves of the last decimal around 20 and 26 GeV
    edges = np.concatenate([t + np.arange(-20, 21) * 0.0005 for t in (LEP_PT_MIN, HAD_PT_MIN)])
    edges = np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)])
    for cut in (LEP_PT_MIN, HAD_PT_MIN, JET_PT_MIN):
        np.testing.assert_array_equal(round3_fast_array(edges) >= cut, np.round(edges, 3) >= cut)
        np.testing.assert_array_equal(round3_fast_array(edges) <= cut, np.round(edges, 3) <= cut)


def test_weight_scales_follow_the_survivors(generated_events):
    """Weights scaled per process and selected with the same events as the features."""
    events = generated_events.with_columns(row=np.arange(len(generated_events)))
    nps = NuisanceParameters(tes=0.92, ttbar_scale=0.85, diboson_scale=1.7, bkg_scale=0.995)
    out = apply_systematics(events, nps)
    rows = out["row"].astype(np.int64)
    assert len(out) < len(events)  # tes = 0.92 drops taus below 26 GeV
    factor = {"htautau": 1.0, "ztautau": 0.995, "ttbar": 0.85 * 0.995, "diboson": 1.7 * 0.995}
    expected = events.weights[rows] * np.array([factor[p] for p in events.detailed_labels[rows]])
    np.testing.assert_allclose(out.weights, expected, rtol=1e-15)
    np.testing.assert_array_equal(out.process, events.process[rows])
