"""Built-in simulator: schema, normalisation, determinism, physics properties and
realism against the real reference samples (tests/data)."""

from __future__ import annotations

import numpy as np
import pytest
from toys import DATA_DIR

from workbench.data.derived import compute_derived
from workbench.data.events import Events
from workbench.data.schema import DERIVED, EXPECTED_EVENTS, FEATURES, PROCESSES, UNDEFINED
from workbench_builtins.generators import simulator as sim_plugin
from workbench_builtins.generators.simulator import Simulator, processes, validation
from workbench_builtins.generators.simulator import calibration as cal
from workbench_builtins.generators.simulator import kinematics as kin

COUNTS = {"htautau": 6000, "ztautau": 12000, "ttbar": 5000, "diboson": 3000}


@pytest.fixture(scope="module")
def sample() -> Events:
    return Simulator().generate(COUNTS, seed=11)


@pytest.fixture(scope="module")
def reference():
    return validation.reference_samples(DATA_DIR)


def test_plugin_registers_simulator():
    got = {}
    sim_plugin.register_generators(lambda name, factory, **kw: got.setdefault(name, factory))
    assert got == {"simulator": Simulator}


def test_counts_weights_and_schema(sample):
    sample.validate()
    assert sample.fields.count("process") == 1
    for code, name in enumerate(PROCESSES):
        sel = sample.process == code
        assert sel.sum() == COUNTS[name]
        assert sample.weights[sel].sum() == pytest.approx(EXPECTED_EVENTS[name], rel=1e-9)
    assert (sample.labels == (sample.process == 0)).all()


def test_selection_and_jet_bookkeeping(sample):
    c = sample.columns()
    assert c["PRI_lep_pt"].min() >= cal.LEP_PT_MIN and c["PRI_had_pt"].min() >= cal.HAD_PT_MIN
    assert np.abs(c["PRI_lep_eta"]).max() < cal.LEP_ETA_MAX
    assert np.abs(c["PRI_had_eta"]).max() < cal.HAD_ETA_MAX
    n = c["PRI_n_jets"]
    assert set(np.unique(n)) <= set(range(30))
    for name, need in (("leading", 1), ("subleading", 2)):
        undefined = n < need
        for var in ("pt", "eta", "phi"):
            col = c[f"PRI_jet_{name}_{var}"]
            assert (col[undefined] == UNDEFINED).all()
        pt = c[f"PRI_jet_{name}_pt"][~undefined]
        assert pt.min() >= cal.JET_PT_MIN
        assert np.abs(c[f"PRI_jet_{name}_eta"][~undefined]).max() < cal.JET_ETA_MAX
    two = n >= 2
    assert (c["PRI_jet_leading_pt"][two] >= c["PRI_jet_subleading_pt"][two]).all()
    stored = np.where(n >= 1, c["PRI_jet_leading_pt"], 0) + np.where(two, c["PRI_jet_subleading_pt"], 0)
    # all jets' pT: at least the two stored ones, exactly them when n <= 2, and
    # the rest is at least JET_PT_MIN per extra jet
    np.testing.assert_allclose(c["PRI_jet_all_pt"][n <= 2], stored[n <= 2], rtol=1e-5)
    extra = c["PRI_jet_all_pt"] - stored
    assert (extra[n > 2] >= (n[n > 2] - 2) * cal.JET_PT_MIN * (1 - 1e-5)).all()
    assert (n > 2).any()
    der = compute_derived({k: c[k] for k in c if k.startswith("PRI_")})
    for name in DERIVED:
        np.testing.assert_array_equal(der[name], c[name], err_msg=name)


def test_deterministic_and_chunking_invariant():
    sim = Simulator()
    counts = {"ztautau": 3000, "diboson": 1000}
    a = sim.generate(counts, seed=5)
    b = sim.generate(counts, seed=5)
    chunks = list(sim.iter_chunks(counts, seed=5, chunk_size=700))
    assert max(len(ch) for ch in chunks) <= 700
    c = Events.concatenate(chunks)
    other = sim.generate(counts, seed=6)
    for name in (*FEATURES, "weights", "process"):
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(a[name], c[name])
    assert not np.array_equal(a["PRI_met"], other["PRI_met"])
    # a prefix of a longer request is the same events
    longer = sim.generate({"ztautau": 4000}, seed=5)
    np.testing.assert_array_equal(longer["PRI_met"][:3000], a.of_process("ztautau")["PRI_met"])


def test_bad_counts_are_rejected():
    with pytest.raises(ValueError, match="counts\\['ztautau'\\]"):
        Simulator().generate({"ztautau": -1}, seed=1)
    with pytest.raises(ValueError, match="unknown process label"):
        Simulator().generate({"zz": 10}, seed=1)
    with pytest.raises(ValueError, match="unknown Detector setting"):
        Simulator(detector={"nonsense": 1})


def test_two_body_decay_conserves_four_momentum():
    rng = np.random.default_rng(0)
    n = 20000
    m = kin.breit_wigner(rng, n, cal.Z_MASS, cal.Z_WIDTH, 60, 120)
    parent = kin.from_mt_rapidity(rng.normal(0, 30, n), rng.normal(0, 30, n), rng.normal(0, 2, n), m)
    d1, d2 = kin.two_body_decay(rng, parent, m, kin.TAU_MASS, kin.TAU_MASS)
    for d in (d1, d2):
        mass = np.sqrt(np.maximum(d[0] ** 2 - (d[1:] ** 2).sum(0), 0))
        np.testing.assert_allclose(mass, kin.TAU_MASS, atol=2e-3)
    np.testing.assert_allclose(d1 + d2, parent, atol=1e-8)


def test_michel_spectrum_moments():
    # density 2 x^2 (3 - 2x): E[x] = 7/10, E[x^2] = 8/15
    x = kin.michel_fraction(np.random.default_rng(1), 400_000)
    assert x.mean() == pytest.approx(0.7, abs=2e-3)
    assert (x**2).mean() == pytest.approx(8 / 15, abs=2e-3)


@pytest.mark.parametrize("name", PROCESSES)
def test_truth_is_transverse_momentum_balanced(name):
    """visible + invisible + partons + soft recoil = 0: what makes MET physical."""
    cfg = cal.default_processes()[name]
    truth = processes.generate_truth(name, np.random.default_rng(3), 20000, cfg)
    n = truth.lep.shape[1]
    for axis, trig in ((0, np.cos), (1, np.sin)):
        total = truth.lep[1 + axis] + truth.had[1 + axis] + truth.invisible[axis] + truth.soft[axis]
        total += kin.segment_sum(truth.partons.pt * trig(truth.partons.phi), truth.partons.event, n)
        np.testing.assert_allclose(total, 0.0, atol=1e-3)


def test_higgs_peak_without_detector_effects():
    """Perfect detector: visible mass + neutrinos cannot exceed the Higgs mass; the
    collinear mass peaks at 125 GeV."""
    cfg = cal.default_processes()["htautau"]
    truth = processes.generate_truth("htautau", np.random.default_rng(4), 20000, cfg)
    vis = truth.lep + truth.had
    m_vis = np.sqrt(np.maximum(vis[0] ** 2 - (vis[1:] ** 2).sum(0), 0))
    assert m_vis.max() < cal.HIGGS_MASS + 0.1
    assert 0.5 * cal.HIGGS_MASS < np.median(m_vis) < 0.8 * cal.HIGGS_MASS


@pytest.mark.parametrize("process", ["ztautau", "htautau"])
def test_key_features_match_reference(process, sample, reference):
    """No key feature rejected at 1% by a two-sample KS test against the real events."""
    sim = validation.simulated_samples(sample)[process]
    table = validation.ks_table(sim, reference[process], validation.KEY_FEATURES)
    rejected = {k: v for k, v in table.items() if v["p"] < 0.01}
    assert not rejected, f"{process}: KS rejects {rejected}"


def test_signal_background_separation_like_real_data(sample, reference):
    sim = validation.simulated_samples(sample)
    a_sim = validation.auc(sim["htautau"]["DER_mass_vis"], sim["ztautau"]["DER_mass_vis"])
    a_ref = validation.auc(reference["htautau"]["DER_mass_vis"], reference["ztautau"]["DER_mass_vis"])
    # reference: 222 vs 309 events, AUC standard error ~0.025
    assert abs(a_sim - a_ref) < 0.075


@pytest.mark.parametrize("point", [{"tes": 0.97}, {"tes": 1.03}])
def test_threshold_losses_like_real_data(point, sample, reference):
    sim = validation.simulated_samples(sample)["ztautau"]
    a = validation.systematic_response(sim, point)
    b = validation.systematic_response(reference["ztautau"], point)
    assert abs(a["kept_ratio"] - b["kept_ratio"]) < 0.03
    assert abs(a["kept_nominal"] - b["kept_nominal"]) < 0.05


def test_simulate_to_parquet_streams_chunks(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "sim.parquet"
    counts = {"htautau": 500, "ztautau": 1500}
    written = sim_plugin.simulate_to_parquet(path, counts, seed=2, chunk_size=400)
    assert written == 2000
    table = pq.read_table(path)
    assert table.num_rows == 2000
    labels = np.asarray(table.column("detailed_labels").to_pylist()).astype(str)
    assert (labels == "htautau").sum() == 500
    direct = Simulator().generate(counts, seed=2)
    np.testing.assert_allclose(table.column("PRI_met").to_numpy(), direct["PRI_met"])


def test_lepton_fraction_and_conditional_michel():
    """z = x (1 + cos)/2 has mean 7/10 * 1/2; x drawn given z must give back the
    Michel moments (E[x] = 7/10, E[x^2] = 8/15) and a uniform cos."""
    rng = np.random.default_rng(5)
    z = kin.lepton_z(rng.random(400_000, dtype=np.float32)).astype(np.float64)
    assert z.mean() == pytest.approx(0.35, abs=2e-3)
    x = kin.michel_given_z(z, rng.random(z.size))
    assert x.mean() == pytest.approx(0.7, abs=2e-3)
    assert (x**2).mean() == pytest.approx(8 / 15, abs=2e-3)
    cos = 2 * z / x - 1
    assert cos.mean() == pytest.approx(0.0, abs=5e-3) and (cos**2).mean() == pytest.approx(1 / 3, abs=5e-3)


def test_early_rejection_bounds_are_conservative():
    """The truth-level bounds let through everything that can pass at 6 sigma of
    the smearing: a lepton/tau just at the bound reaches the cut with a 6-sigma
    upward fluctuation."""
    from workbench_builtins.generators.simulator import detector

    det = cal.Detector()
    pre = processes.preselection(det)
    assert detector.lepton_response(np.array([pre.lep_pt]), np.array([6.0]), det)[0] <= cal.LEP_PT_MIN + 1e-9
    assert detector.had_response(np.array([pre.had_pt]), np.array([6.0]), det)[1][0] <= cal.HAD_PT_MIN
    assert pre.lep_eta > cal.LEP_ETA_MAX and pre.had_eta > cal.HAD_ETA_MAX


@pytest.mark.parametrize("process", ["ztautau", "htautau"])
def test_fast_path_bounds_never_drop_a_selectable_event(process):
    """With pruning off every candidate is completed: no selected event may be one
    that an early bound of the fused kernel would have dropped."""
    from workbench_builtins.generators.simulator import resonance

    cfg = cal.default_processes()[process]
    block, violations = resonance.generate(np.random.default_rng(21), 300_000, cfg, cal.Detector(), prune=False)
    assert violations == 0 and block.shape[1] > 10_000


def test_tau_pt_bound_holds_for_boosted_bosons():
    """Brute force: taus from kinematics.two_body_decay of bosons at any rapidity
    never exceed resonance_kernel.tau_pt_bound."""
    from workbench_builtins.generators.simulator.resonance_kernel import tau_pt_bound

    rng = np.random.default_rng(8)
    n = 200_000
    m = rng.uniform(50, 200, n)
    pt_b = rng.exponential(60, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    boson = kin.from_mt_rapidity(pt_b * np.cos(phi), pt_b * np.sin(phi), rng.normal(0, 3, n), m)
    cos_t = rng.uniform(-1, 1, n)
    tau, _ = kin.two_body_decay(rng, boson, m, kin.TAU_MASS, kin.TAU_MASS, cos_t)
    sin_t = np.sqrt(1 - cos_t**2)
    bound = np.array([tau_pt_bound(b, mm, s, c) for b, mm, s, c in zip(pt_b, m, sin_t, cos_t)])
    assert (kin.pt(tau) <= bound * (1 + 1e-9)).all()


def test_jet_kernel_matches_brute_force():
    from workbench.data.schema import PRIMARY
    from workbench_builtins.generators.simulator import jets

    rng = np.random.default_rng(4)
    n = 500
    event = rng.integers(0, n, 3000)
    pt, eta, phi = rng.uniform(22, 200, 3000), rng.normal(0, 2, 3000), rng.uniform(-3, 3, 3000)
    block = np.empty((len(PRIMARY), n))
    jets.jet_rows(block, event, pt, eta, phi)
    col = dict(zip(PRIMARY, block))
    for i in range(n):
        mine = np.flatnonzero(event == i)
        order = mine[np.argsort(-pt[mine])]
        assert col["PRI_n_jets"][i] == len(mine)
        assert col["PRI_jet_all_pt"][i] == pytest.approx(pt[mine].sum())
        for slot, name in enumerate(("leading", "subleading")):
            for var, values in (("pt", pt), ("eta", eta), ("phi", phi)):
                want = values[order[slot]] if len(order) > slot else UNDEFINED
                assert col[f"PRI_jet_{name}_{var}"][i] == want


@pytest.mark.parametrize("process", ["ztautau", "htautau"])
def test_fast_path_matches_numpy_reference(process):
    """The fused kernel and the NumPy reference (processes.resonance +
    detector.reconstruct) give the same distributions (two-sample KS per PRI_ feature)."""
    from scipy.stats import ks_2samp

    from workbench.data.schema import PRIMARY
    from workbench_builtins.generators.simulator import detector, resonance

    cfg, det = cal.default_processes()[process], cal.Detector()
    fast = np.concatenate([resonance.generate(np.random.default_rng(s), 1 << 16, cfg, det)
                           for s in range(6)], axis=1)
    ref = []
    for s in range(6):
        rng = np.random.default_rng(100 + s)
        ref.append(detector.reconstruct(rng, processes.resonance(rng, 1 << 16, cfg, det), det))
    ref = np.concatenate(ref, axis=1)
    for row, name in enumerate(PRIMARY):
        assert ks_2samp(fast[row], ref[row]).pvalue > 1e-3, name
    # correlations between the PRI_ columns: the derived features built from them
    fast_der = compute_derived(dict(zip(PRIMARY, fast)))
    ref_der = compute_derived(dict(zip(PRIMARY, ref)))
    for name in ("DER_mass_vis", "DER_mass_transverse_met_lep", "DER_deltar_had_lep", "DER_pt_h",
                 "DER_pt_ratio_lep_had", "DER_met_phi_centrality"):
        assert ks_2samp(fast_der[name], ref_der[name]).pvalue > 1e-3, name


def test_bulk_draws_are_uniform_normal_and_deterministic():
    """draws.uniforms (SplitMix64 keyed from the Generator) and draws.normals
    (Box-Muller): the right distributions, independent consecutive calls, and
    a deterministic function of the Generator's state."""
    from scipy.stats import kstest, pearsonr

    from workbench_builtins.generators.simulator import draws

    rng = np.random.default_rng(3)
    u = draws.uniforms(rng, 3, 100_001)
    assert u.shape == (3, 100_001) and u.dtype == np.float32
    assert u.min() >= 0.0 and u.max() < 1.0
    for row in u:
        assert kstest(row, "uniform").pvalue > 1e-3
    assert abs(pearsonr(u[0], u[1])[0]) < 0.015  # rows are independent
    g = draws.normals(rng, 200_001)
    assert g.size == 200_001 and kstest(g, "norm").pvalue > 1e-3
    assert abs(pearsonr(g[:100_000], g[100_000:200_000])[0]) < 0.015  # cos/sin halves of a pair
    again = np.random.default_rng(3)
    np.testing.assert_array_equal(draws.uniforms(again, 3, 100_001), u)
    np.testing.assert_array_equal(draws.normals(again, 200_001), g)
    assert not np.array_equal(draws.uniforms(again, 1, 1000), u[0, :1000])


def test_emission_layout_matches_repeat():
    """emissions.layout: owner of each emission and the starts, K = 0 included."""
    from workbench_builtins.generators.simulator import emissions
    from workbench_builtins.generators.simulator.resonance_kernel import E_OFF, STATE_FIELDS, K

    k = np.random.default_rng(2).integers(0, 5, 3000)
    k[:3] = 0
    k[-2:] = 0
    s = np.zeros((STATE_FIELDS, k.size + 10))
    s[K, :k.size] = k
    owner, starts = emissions.layout(s, k.size)
    np.testing.assert_array_equal(owner, np.repeat(np.arange(k.size), k))
    np.testing.assert_array_equal(starts, np.cumsum(k) - k)
    np.testing.assert_array_equal(s[E_OFF, :k.size], starts)
