"""Realism checks of the simulator against the real reference samples.

Per process: two-sample Kolmogorov-Smirnov distance and p-value of every
feature, jet-multiplicity fractions, and a classifier two-sample test (a
gradient-boosted classifier separating simulated from real events; its held-out
AUC is 0.5 when the samples are indistinguishable, the p-value is the
Mann-Whitney normal approximation).  Used by benchmarks/realism_report.py and
tests/test_simulator.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from workbench.data.derived import compute_derived
from workbench.data.events import Events
from workbench.data.schema import DERIVED, FEATURES, PRIMARY, PROCESSES

KEY_FEATURES = (
    "DER_mass_vis", "PRI_had_pt", "PRI_lep_pt", "PRI_met",
    "DER_mass_transverse_met_lep", "DER_deltar_had_lep", "PRI_n_jets",
)

REFERENCE_DIR = Path(os.environ.get("WORKBENCH_REFERENCE_DATA", "/work/shared/reference-data"))
_SINGLE = {"htautau": "htautau_only", "ttbar": "ttbar_only", "diboson": "diboson_only"}


def reference_samples(directory: str | os.PathLike = REFERENCE_DIR) -> dict[str, dict[str, np.ndarray]]:
    """Real events per process: the mixed sample's events plus the single-process
    files, with DER_ recomputed from the primaries (the single files have none)."""
    import pyarrow.parquet as pq

    directory = Path(directory)
    mixed_path = directory / "fair_universe_sample.parquet"
    if not mixed_path.exists():
        raise FileNotFoundError(f"reference sample {mixed_path} not found (set WORKBENCH_REFERENCE_DATA)")
    mixed = pq.read_table(mixed_path).to_pydict()
    labels = np.asarray(mixed["detailed_labels"]).astype(str)
    out = {}
    for process in PROCESSES:
        parts = [{k: np.asarray(mixed[k], dtype=np.float64)[labels == process] for k in PRIMARY}]
        if process in _SINGLE:
            path = directory / f"{_SINGLE[process]}.parquet"
            if path.exists():
                single = pq.read_table(path, columns=list(PRIMARY)).to_pydict()
                parts.append({k: np.asarray(single[k], dtype=np.float64) for k in PRIMARY})
        pri = {k: np.concatenate([p[k] for p in parts]).astype(np.float32) for k in PRIMARY}
        cols = dict(pri)
        cols.update(compute_derived(pri))
        out[process] = cols
    return out


def simulated_samples(events: Events) -> dict[str, dict[str, np.ndarray]]:
    return {p: events.of_process(p).columns() for p in PROCESSES if (events.process == PROCESSES.index(p)).any()}


def ks_table(sim: dict, ref: dict, features=FEATURES) -> dict[str, dict[str, float]]:
    from scipy.stats import ks_2samp

    table = {}
    for name in features:
        res = ks_2samp(np.asarray(sim[name], dtype=np.float64), np.asarray(ref[name], dtype=np.float64))
        table[name] = {"ks": float(res.statistic), "p": float(res.pvalue)}
    return table


def jet_fractions(cols: dict, top: int = 4) -> list[float]:
    """Fractions of events with 0, 1, ..., top-1 and >= top jets."""
    n = np.minimum(np.asarray(cols["PRI_n_jets"]).astype(int), top)
    return (np.bincount(n, minlength=top + 1) / max(len(n), 1)).tolist()


def auc(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U / n1 n2), ties counted half."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([scores_pos, scores_neg]))
    n1, n2 = len(scores_pos), len(scores_neg)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n2))


def auc_pvalue(value: float, n1: int, n2: int) -> float:
    """One-sided p-value of an AUC this high under 'same distribution' (normal approx)."""
    from scipy.stats import norm

    sigma = np.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2))
    return float(norm.sf((value - 0.5) / sigma))


def _gbdt(x, y, seed):
    import xgboost as xgb

    model = xgb.XGBClassifier(
        n_estimators=150, max_depth=3, learning_rate=0.1, subsample=0.8,
        n_jobs=1, random_state=seed, verbosity=0,
    )
    model.fit(x, y)
    return model


def _matrix(cols, features):
    return np.stack([np.asarray(cols[f], dtype=np.float32) for f in features], axis=1)


def classifier_two_sample(sim: dict, ref: dict, features=FEATURES, seed: int = 0, folds: int = 2):
    """Held-out AUC (k-fold) of a GBDT separating simulated from reference events.

    The simulated sample is subsampled to the reference size so that the
    classifier sees balanced classes.
    """
    rng = np.random.default_rng(seed)
    xr = _matrix(ref, features)
    xs = _matrix(sim, features)
    xs = xs[rng.choice(len(xs), size=min(len(xs), len(xr)), replace=False)]
    x = np.concatenate([xs, xr])
    y = np.concatenate([np.ones(len(xs)), np.zeros(len(xr))])
    fold = rng.permutation(len(x)) % folds
    scores = np.empty(len(x))
    for k in range(folds):
        model = _gbdt(x[fold != k], y[fold != k], seed)
        scores[fold == k] = model.predict_proba(x[fold == k])[:, 1]
    value = auc(scores[y == 1], scores[y == 0])
    return {"auc": value, "p": auc_pvalue(value, int(y.sum()), int((1 - y).sum())),
            "n_sim": int(y.sum()), "n_ref": int((1 - y).sum())}


def separation(sig: dict, bkg: dict, features=FEATURES, seed: int = 0, folds: int = 2) -> dict:
    """Signal-vs-background separation: DER_mass_vis AUC and a k-fold GBDT AUC."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([_matrix(sig, features), _matrix(bkg, features)])
    y = np.concatenate([np.ones(len(sig[features[0]])), np.zeros(len(bkg[features[0]]))])
    fold = rng.permutation(len(x)) % folds
    scores = np.empty(len(x))
    for k in range(folds):
        model = _gbdt(x[fold != k], y[fold != k], seed)
        scores[fold == k] = model.predict_proba(x[fold == k])[:, 1]
    mvis = np.concatenate([sig["DER_mass_vis"], bkg["DER_mass_vis"]])
    return {"auc_gbdt": auc(scores[y == 1], scores[y == 0]),
            "auc_mass_vis": auc(mvis[y == 1], mvis[y == 0])}


def transfer_auc(sim_sig, sim_bkg, ref_sig, ref_bkg, features=FEATURES, seed: int = 0) -> float:
    """AUC on the real reference events of a classifier trained on simulated events."""
    x = np.concatenate([_matrix(sim_sig, features), _matrix(sim_bkg, features)])
    y = np.concatenate([np.ones(len(sim_sig[features[0]])), np.zeros(len(sim_bkg[features[0]]))])
    model = _gbdt(x, y, seed)
    s_sig = model.predict_proba(_matrix(ref_sig, features))[:, 1]
    s_bkg = model.predict_proba(_matrix(ref_bkg, features))[:, 1]
    return auc(s_sig, s_bkg)


SYSTEMATIC_POINTS = (
    {"tes": 0.97}, {"tes": 1.03}, {"jes": 0.97}, {"jes": 1.03}, {"soft_met": 3.0},
)


def systematic_response(cols: dict, point: dict, seed: int = 31415) -> dict[str, float]:
    """How a tes/jes/soft_met point changes a sample, relative to the nominal
    point with the same 26 GeV thresholds: survival fraction, mean jet count,
    mean MET and mean had pT (all per event, unweighted)."""
    from workbench.systematics.engine import apply_systematics
    from workbench.systematics.nuisance import NuisanceParameters

    events = Events.from_columns({k: cols[k] for k in FEATURES}, validate=False)
    nominal = apply_systematics(events, NuisanceParameters(), seed)
    shifted = apply_systematics(events, NuisanceParameters(**point), seed)
    n0 = len(events)
    return {
        "kept_nominal": len(nominal) / n0,
        "kept": len(shifted) / n0,
        "kept_ratio": len(shifted) / max(len(nominal), 1),
        "d_mean_n_jets": float(shifted["PRI_n_jets"].mean() - nominal["PRI_n_jets"].mean()),
        "d_mean_met": float(shifted["PRI_met"].mean() - nominal["PRI_met"].mean()),
        "d_mean_had_pt": float(shifted["PRI_had_pt"].mean() - nominal["PRI_had_pt"].mean()),
    }


__all__ = [
    "SYSTEMATIC_POINTS", "systematic_response",
    "KEY_FEATURES", "reference_samples", "simulated_samples", "ks_table", "jet_fractions",
    "auc", "auc_pvalue", "classifier_two_sample", "separation", "transfer_auc", "DERIVED",
]
