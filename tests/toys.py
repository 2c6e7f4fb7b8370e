"""Shared test material: the reference samples and small toy models used by several test modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from scipy import stats

from workbench import IntervalResult
from workbench.data.derived import compute_derived
from workbench.data.events import Events
from workbench.data.schema import EXPECTED_EVENTS, FEATURES, PRIMARY, PROCESSES, UNDEFINED
from workbench.plugin.protocols import TrainingData
from workbench.systematics.engine import apply_systematics
from workbench.systematics.nuisance import PRIORS


class ResampledReference:
    """Toy generator: the reference sample's events, resampled with 1% jitter."""

    def __init__(self, jitter: float = 0.01):
        self.jitter = jitter

    def generate(self, counts, seed):

        from workbench.data.derived import compute_derived

        cols = read_parquet_columns(REFERENCE_SAMPLE)
        codes = Events.from_columns(cols).process
        rng = np.random.default_rng(seed)
        parts = []
        for code, proc in enumerate(PROCESSES):
            n = counts.get(proc, 0)
            idx = np.flatnonzero(codes == code)
            if n == 0 or len(idx) == 0:
                continue
            pick = rng.choice(idx, size=n)
            out = {k: v[pick] for k, v in cols.items() if k.startswith("PRI_")}
            for k in ("PRI_lep_pt", "PRI_had_pt", "PRI_met"):
                out[k] = out[k] * rng.normal(1, self.jitter, n)
            out.update(compute_derived(out))
            out["weights"] = np.full(n, EXPECTED_EVENTS[proc] / n)
            out["detailed_labels"] = np.array([proc] * n)
            parts.append(Events.from_columns(out))
        return Events.concatenate(parts)


class Counting:
    """Closed-form counting interval: N ~ Poisson(mu S + B), mu = (N - B)/S +- sqrt(N)/S."""

    interrupt_after = -1  # tests set this to simulate a kill mid-run

    def __init__(self, fail_after: int = -1):
        self.fail_after = fail_after
        self.calls = 0

    def fit(self, data, classifier, templates):
        nominal = data.apply_systematics(data.holdout, data.fixed, 1)
        sums = nominal.sum_weights(by_process=True)
        self.s = sums["htautau"]
        self.b = sum(v for k, v in sums.items() if k != "htautau")

    def predict(self, events):
        self.calls += 1
        if self.calls in (self.fail_after, Counting.interrupt_after):
            raise KeyboardInterrupt
        n = len(events)
        mu_hat = (n - self.b) / self.s
        half = stats.norm.ppf(0.5 + 0.6827 / 2) * np.sqrt(n) / self.s
        return IntervalResult(mu_hat, mu_hat - half, mu_hat + half, info={"n": n})




def synthetic_events(n_per_process: int, seed: int, signal_shift: float = 25.0) -> Events:
    """Toy labelled events with plausible primaries (stored level: 20 GeV thresholds).

    Signal has a harder tau; weights per process sum to the expected yield.
    """
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {name: [] for name in PRIMARY}
    procs, weights = [], []
    for code, proc in enumerate(PROCESSES):
        n = n_per_process
        shift = signal_shift if proc == "htautau" else 0.0
        c = {
            "PRI_lep_pt": 20 + rng.exponential(15, n),
            "PRI_lep_eta": rng.uniform(-2.5, 2.5, n),
            "PRI_lep_phi": rng.uniform(-np.pi, np.pi, n),
            "PRI_had_pt": 22 + shift + rng.exponential(20, n),
            "PRI_had_eta": rng.uniform(-2.5, 2.5, n),
            "PRI_had_phi": rng.uniform(-np.pi, np.pi, n),
            "PRI_met": rng.exponential(20 + code * 5, n),
            "PRI_met_phi": rng.uniform(-np.pi, np.pi, n),
        }
        n_jets = rng.poisson(0.8 + 0.5 * code, n)
        for k, name in ((1, "leading"), (2, "subleading")):
            has = n_jets >= k
            c[f"PRI_jet_{name}_pt"] = np.where(has, 20 + rng.exponential(30, n), -25.0)
            c[f"PRI_jet_{name}_eta"] = np.where(has, rng.uniform(-4.5, 4.5, n), -25.0)
            c[f"PRI_jet_{name}_phi"] = np.where(has, rng.uniform(-np.pi, np.pi, n), -25.0)
        c["PRI_n_jets"] = n_jets.astype(float)
        c["PRI_jet_all_pt"] = (np.maximum(c["PRI_jet_leading_pt"], 0)
                               + np.maximum(c["PRI_jet_subleading_pt"], 0))
        for name in PRIMARY:
            cols[name].append(np.round(c[name], 3))
        procs.append(np.full(n, code))
        weights.append(np.full(n, EXPECTED_EVENTS[proc] / n))
    out = {name: np.concatenate(v) for name, v in cols.items()}
    out.update(compute_derived(out))
    out["process"] = np.concatenate(procs)
    out["weights"] = np.concatenate(weights)
    return Events.from_columns(out)


class HadPtScore:
    """A deterministic stand-in classifier: a logistic function of the tau pT."""

    def fit(self, data):
        pass

    def predict(self, events):
        return 1.0 / (1.0 + np.exp(-(events["PRI_had_pt"] - 45.0) / 12.0))


def training_data(holdout: Events, randomised=("tes", "jes", "soft_met", "ttbar_scale",
                                                "diboson_scale", "bkg_scale"), seed=11):
    return TrainingData(
        train=holdout, holdout=holdout, apply_systematics=apply_systematics,
        sample_pseudo_experiment=lambda mu, nps, s: None, priors=PRIORS,
        randomised=tuple(randomised), mu_range=(0.1, 3.0), seed=seed,
    )


DATA_DIR = Path(__file__).parent / "data"


REFERENCE_SAMPLE = DATA_DIR / "fair_universe_sample.parquet"


PROCESS_SAMPLES = {
    "ttbar": DATA_DIR / "ttbar_only.parquet",
    "diboson": DATA_DIR / "diboson_only.parquet",
    "htautau": DATA_DIR / "htautau_only.parquet",
}


def read_parquet_columns(path: Path) -> dict[str, np.ndarray]:
    """All columns of a parquet file as NumPy arrays (strings as object arrays)."""
    if not path.exists():
        raise FileNotFoundError(f"test data file {path} is missing (see tests/data/README.md)")
    table = pq.read_table(path)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def reference_primaries() -> dict[str, np.ndarray]:
    """Primaries, weights and process labels of all four reference files, concatenated."""
    parts = [read_parquet_columns(REFERENCE_SAMPLE)]
    for process, path in PROCESS_SAMPLES.items():
        cols = read_parquet_columns(path)
        cols["detailed_labels"] = np.full(len(cols["weights"]), process, dtype=object)
        parts.append(cols)
    keys = (*PRIMARY, "weights", "detailed_labels")
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def jittered_events(n: int, seed: int) -> Events:
    """``n`` realistic events: reference rows resampled, momenta and angles jittered.

    Per-event factors (tau 0.8-1.2, jets 0.8-1.25, lepton 0.9-1.2, MET 0.5-1.5)
    spread the taus and jets across the 26 GeV thresholds; jets of one event share
    their factor, so the leading jet stays leading.  Primaries are rounded to 3
    decimals as in the dataset and the DER_ features recomputed.
    """
    src = reference_primaries()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(src["weights"]), n)
    p = {k: src[k][idx].astype(np.float64) for k in PRIMARY}
    n_jets = p["PRI_n_jets"]
    p["PRI_had_pt"] *= rng.uniform(0.8, 1.2, n)
    p["PRI_lep_pt"] *= rng.uniform(0.9, 1.2, n)
    p["PRI_met"] *= rng.uniform(0.5, 1.5, n)
    f_jet = rng.uniform(0.8, 1.25, n)
    p["PRI_jet_all_pt"] *= f_jet
    for obj in ("lep", "had"):
        p[f"PRI_{obj}_phi"] += rng.normal(0, 0.2, n)
        p[f"PRI_{obj}_eta"] = np.clip(p[f"PRI_{obj}_eta"] + rng.normal(0, 0.05, n), -2.5, 2.5)
    p["PRI_met_phi"] += rng.normal(0, 0.2, n)
    for slot, present in (("leading", n_jets > 0), ("subleading", n_jets > 1)):
        p[f"PRI_jet_{slot}_pt"] = np.where(present, p[f"PRI_jet_{slot}_pt"] * f_jet, UNDEFINED)
        phi = p[f"PRI_jet_{slot}_phi"] + rng.normal(0, 0.2, n)
        p[f"PRI_jet_{slot}_phi"] = np.where(present, phi, UNDEFINED)
        eta = p[f"PRI_jet_{slot}_eta"] + rng.normal(0, 0.05, n)
        p[f"PRI_jet_{slot}_eta"] = np.where(present, eta, UNDEFINED)
    for name in ("PRI_lep_phi", "PRI_had_phi", "PRI_met_phi", "PRI_jet_leading_phi",
                 "PRI_jet_subleading_phi"):
        angle = np.mod(p[name] + np.pi, 2 * np.pi) - np.pi
        p[name] = np.where(p[name] == UNDEFINED, UNDEFINED, angle)
    p = {k: np.round(v, 3) for k, v in p.items()}
    cols = {**p, **compute_derived(p)}
    cols["weights"] = src["weights"][idx]
    cols["detailed_labels"] = src["detailed_labels"][idx]
    return Events.from_columns(cols)


def reference_frame(events: Events, dtype=np.float32):
    """A pandas DataFrame as ``HiggsML.systematics.systematics`` expects it.

    Features in ``dtype`` (float32 = the dataset's storage type; float64 makes the
    reference evaluate its formulas in double precision), plus weights, labels,
    detailed_labels and an integer ``event_id`` to align the survivors.
    """
    import pandas as pd

    frame = {name: events[name].astype(dtype) for name in FEATURES}
    frame["weights"] = events.weights
    frame["labels"] = events.labels.astype(np.float64)
    frame["detailed_labels"] = events.detailed_labels.astype(str)
    frame["event_id"] = np.arange(len(events), dtype=np.int64)
    return pd.DataFrame(frame)


class MetScore(HadPtScore):
    """Depends on the tau pT *and* on MET-derived mT, so soft_met moves it too."""

    def predict(self, events):
        mt = np.asarray(events["DER_mass_transverse_met_lep"], dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-(events["PRI_had_pt"] - 45.0) / 12.0 + (mt - 40.0) / 40.0))
