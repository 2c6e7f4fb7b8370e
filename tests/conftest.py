"""Shared fixtures: the reference samples of the public dataset (see tests/data/README.md)
and larger realistic inputs built from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from workbench.derived import compute_derived
from workbench.events import Events
from workbench.schema import FEATURES, PRIMARY, UNDEFINED

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


@pytest.fixture(scope="session")
def reference_columns() -> dict[str, np.ndarray]:
    """The 500-event reference sample as raw columns, exactly as stored."""
    return read_parquet_columns(REFERENCE_SAMPLE)


@pytest.fixture(scope="session")
def reference_sample(reference_columns) -> Events:
    """The 500-event reference sample (all 28 features, weights, labels) as Events."""
    return Events.from_columns(reference_columns)


@pytest.fixture(scope="session")
def generated_events() -> Events:
    """20k realistic labelled events around the thresholds (see :func:`jittered_events`)."""
    return jittered_events(20_000, seed=2024)
