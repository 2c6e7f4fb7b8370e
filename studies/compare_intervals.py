"""Compare interval strategies on the SAME pseudo-experiments.

Trains the spec's pipeline once (classifier, templates, profile likelihood),
fits the other strategies on the same TrainingData and classifier, then draws
every PE of the spec's plan once and hands it to each strategy.  The classifier
is wrapped in a one-entry cache so a PE is scored once for all strategies.

    python studies/compare_intervals.py specs/quick.toml --trials 10 --per-trial 5

Writes <out>/compare_intervals.json (per-PE records and the table) and
<out>/compare_intervals.md; prints the table.  Columns: coverage (pooled, with
its binomial error), mean width, challenge score, quantile score (mean pinball
loss of mu16 at 0.15865 plus mu84 at 0.84135: lower is better), RMSE of mu_hat,
coverage per mu_true bin, median inference time per PE.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from workbench.outputs.files import write_json
from workbench.pipeline import train
from workbench.plugin.registry import get_registry
from workbench.pseudo_experiments import pe_plan
from workbench.scoring import score
from workbench.spec import load_spec

DEFAULT = {
    "quantile-regression": {"mc_noise": 0.25},
    "bin-classifier": {"mc_noise": 0.25},
    "hybrid": {"mc_noise": 0.25},
    "calibrated": {"inner": "quantile-regression", "inner_params": {"mc_noise": 0.25}},
}
MU_BINS = ((0.1, 1.0), (1.0, 2.0), (2.0, 3.0))


class CachedClassifier:
    """Remembers the scores of the last events object (one PE, many strategies)."""

    def __init__(self, classifier):
        self.classifier = classifier
        self._key, self._scores = None, None

    def fit(self, data):  # pragma: no cover - trained already
        self.classifier.fit(data)

    def predict(self, events):
        if self._key is not events:
            self._key, self._scores = events, self.classifier.predict(events)
        return self._scores


def pinball(pred, truth, alpha):
    d = np.asarray(truth) - np.asarray(pred)
    return np.maximum(alpha * d, (alpha - 1) * d)


def table(records, strategies, eps, cl):
    rows = []
    for name in strategies:
        rs = [r for r in records if r["strategy"] == name]
        mu = np.array([r["mu_true"] for r in rs])
        lo, hi, mh = (np.array([r[k] for r in rs]) for k in ("mu16", "mu84", "mu_hat"))
        s = score(mu, lo, hi, mh, eps=eps, one_sigma=cl)
        a = 0.5 * (1 - cl)
        qs = float(np.mean(pinball(lo, mu, a) + pinball(hi, mu, 1 - a)))
        per = {}
        for b0, b1 in MU_BINS:
            m = (mu >= b0) & (mu <= b1)
            per[f"{b0:g}-{b1:g}"] = (float(np.mean((lo[m] <= mu[m]) & (mu[m] <= hi[m])))
                                     if m.any() else None, int(m.sum()))
        rows.append({"strategy": name, "n": s.n, "coverage": s.coverage,
                     "coverage_error": float(np.sqrt(cl * (1 - cl) / s.n)), "width": s.width,
                     "score": s.score, "quantile_score": qs, "rmse_mu_hat":
                     float(np.sqrt(np.mean((mh - mu) ** 2))), "coverage_by_mu": per,
                     "inference_median_s": float(np.median([r["seconds"] for r in rs]))})
    return rows


def markdown(rows) -> str:
    bins = list(rows[0]["coverage_by_mu"])
    head = ("| strategy | n | coverage | width | score | quantile score | RMSE | "
            + " | ".join(f"cov mu {b}" for b in bins) + " | s/PE |")
    lines = [head, "|" + "---|" * (8 + len(bins))]
    for r in rows:
        per = " | ".join("-" if v is None else f"{v:.2f} ({n})"
                         for v, n in r["coverage_by_mu"].values())
        lines.append(f"| {r['strategy']} | {r['n']} | {r['coverage']:.3f} +- "
                     f"{r['coverage_error']:.3f} | {r['width']:.3f} | {r['score']:.3f} | "
                     f"{r['quantile_score']:.4f} | {r['rmse_mu_hat']:.3f} | {per} | "
                     f"{r['inference_median_s']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="?", default="specs/quick.toml")
    ap.add_argument("--trials", type=int)
    ap.add_argument("--per-trial", type=int)
    ap.add_argument("--out", default="results/compare-intervals")
    ap.add_argument("--strategies", default=",".join(DEFAULT),
                    help="comma-separated interval strategies besides the spec's own")
    ap.add_argument("--params", default="{}",
                    help='JSON {strategy: params} overriding the defaults')
    args = ap.parse_args(argv)
    overrides = {}
    if args.trials:
        overrides["pseudo_experiments.trials"] = args.trials
    if args.per_trial:
        overrides["pseudo_experiments.per_trial"] = args.per_trial
    spec = load_spec(args.spec, overrides or None)
    params = {**DEFAULT, **json.loads(args.params)}
    names = [n for n in args.strategies.split(",") if n]
    reg = get_registry()
    t0 = time.perf_counter()
    pipeline = train(spec, reg)
    clf = CachedClassifier(pipeline.classifier)
    if pipeline.templates is not None and hasattr(pipeline.templates, "classifier"):
        pipeline.templates.classifier = clf
    strategies = {spec.interval.name: pipeline.interval}
    fit_s = {spec.interval.name: pipeline.timings.get("interval_fit")}
    for name in names:
        s = reg.create("interval", name, params.get(name, {}))
        t1 = time.perf_counter()
        s.fit(pipeline.data, clf, pipeline.templates)
        fit_s[name] = time.perf_counter() - t1
        strategies[name] = s
        print(f"fitted {name} in {fit_s[name]:.1f} s", flush=True)
    t_train = time.perf_counter() - t0
    records = []
    plan = pe_plan(spec)
    for i, task in enumerate(plan):
        pe = pipeline.pseudo_experiment(task)  # the runner's own draw (pool or generator)
        pe = pe.without_truth()
        for name, s in strategies.items():
            t1 = time.perf_counter()
            r = s.predict(pe)
            records.append({"index": i, "strategy": name, "mu_true": task["mu_true"],
                            "mu_hat": r.mu_hat, "mu16": r.mu16, "mu84": r.mu84,
                            "seconds": time.perf_counter() - t1})
        print(f"PE {i + 1}/{len(plan)} mu_true={task['mu_true']:.3f}", flush=True)
    rows = table(records, list(strategies), spec.scoring.eps, spec.scoring.confidence_level)
    md = markdown(rows)
    out = Path(args.out)
    write_json(out / "compare_intervals.json", {
        "spec": spec.as_dict(), "strategy_params": {n: params.get(n, {}) for n in names},
        "fit_seconds": fit_s, "training_seconds": t_train, "table": rows, "records": records})
    (out / "compare_intervals.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
