"""Realism report of the built-in simulator against the real reference samples.

    python benchmarks/realism_report.py [--events 50000] [--seed 1]
        [--reference ../shared/reference-data] [--null-repeats 5] [--maxima-events 10000000]
        [--simulator /tmp/sim_before/plugins/workbench_builtins/generators/simulator] [--out realism_report]

Writes <out>.json and <out>.md.  Per process: the two-sample Kolmogorov-Smirnov
distance and p-value of all 16 PRI_ and the 12 DER_ features (the DER_ of the
reference recomputed from its primaries, as the single-process files have
none; the counts of features rejected at 1%), the jet-multiplicity table
(fractions, binomial sigma, pull), and the classifier two-sample AUC (a GBDT
separating simulated from real events, 2-fold held out) next to its null
spread: the same AUC between two *simulated* samples of the reference's size,
so that a reader sees what is noise.  Then the signal vs background
separation (simulated vs real), the threshold response to tes/jes/soft_met,
and (--maxima-events) every feature's maximum over a large simulated stream in
one pseudo-experiment's process mix against the reference's.

The reference defaults to ../shared/reference-data (relative to the working
directory, the repository root), or tests/data (the copies) if that is absent.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from workbench.data.schema import DERIVED, FEATURES, PRIMARY, PROCESSES
from workbench_builtins.generators.simulator import Simulator
from workbench_builtins.generators.simulator import validation as V

DEFAULT_REFERENCES = (Path("../shared/reference-data"), Path("tests/data"))
ALPHA = 0.01


def default_reference() -> str:
    for path in (V.REFERENCE_DIR, *DEFAULT_REFERENCES):
        if (Path(path) / "fair_universe_sample.parquet").exists():
            return str(path)
    return str(DEFAULT_REFERENCES[0])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000, help="simulated events per process")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reference", default=None, help="folder of the reference samples")
    ap.add_argument("--null-repeats", type=int, default=5, help="sim-vs-sim splits for the AUC null spread")
    ap.add_argument("--no-systematics", action="store_true", help="skip the tes/jes/soft_met responses")
    ap.add_argument("--maxima-events", type=int, default=0,
                    help="also stream this many events of one pseudo-experiment's process mix "
                         "(e.g. 10000000) and report every feature's maximum per process")
    ap.add_argument("--simulator", help="folder of another copy of the simulator package to report on "
                                        "(e.g. a git archive of an earlier commit)")
    ap.add_argument("--out", default="realism_report")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    reference = args.reference or default_reference()
    factory = _load(args.simulator).Simulator if args.simulator else Simulator
    events = factory().generate({p: args.events for p in PROCESSES}, args.seed)
    sim = V.simulated_samples(events)
    ref = V.reference_samples(reference)
    report: dict = {"events_per_process": args.events, "seed": args.seed, "reference": reference,
                    "simulator": args.simulator or "workbench_builtins.generators.simulator",
                    "alpha": ALPHA, "processes": {}}
    for p in PROCESSES:
        n_ref = int(len(ref[p]["PRI_lep_pt"]))
        ks = V.ks_table(sim[p], ref[p], FEATURES)
        entry = {
            "n_reference": n_ref,
            "ks": ks,
            "rejected_primary": [f for f in PRIMARY if ks[f]["p"] < ALPHA],
            "rejected_derived": [f for f in DERIVED if ks[f]["p"] < ALPHA],
            "n_jets_fractions": {"sim": V.jet_fractions(sim[p]), "ref": V.jet_fractions(ref[p])},
            "n_jets_table": V.jet_multiplicity_table(sim[p], ref[p], top=6),
            "classifier_two_sample": V.classifier_two_sample(sim[p], ref[p], seed=args.seed),
            "classifier_null": V.null_two_sample(sim[p], n_ref, seed=args.seed, repeats=args.null_repeats),
            "ranges": {"sim": V.feature_ranges(sim[p]), "ref": V.feature_ranges(ref[p])},
        }
        if not args.no_systematics:
            entry["systematics"] = {
                json.dumps(pt): {"sim": V.systematic_response(sim[p], pt),
                                 "ref": V.systematic_response(ref[p], pt)}
                for pt in V.SYSTEMATIC_POINTS
            }
        report["processes"][p] = entry
    # signal vs background (htautau vs ztautau) on real and simulated events
    n_sig, n_bkg = (len(ref[p]["PRI_lep_pt"]) for p in ("htautau", "ztautau"))

    def sub(cols, k):  # the first k events: a random subsample (events are i.i.d.)
        return {f: v[:k] for f, v in cols.items()}

    report["separation"] = {
        "reference": V.separation(ref["htautau"], ref["ztautau"], seed=args.seed),
        "simulated_same_size": V.separation(sub(sim["htautau"], n_sig), sub(sim["ztautau"], n_bkg), seed=args.seed),
        "simulated_large": V.separation(sim["htautau"], sim["ztautau"], seed=args.seed),
        "trained_on_sim_tested_on_reference": V.transfer_auc(
            sim["htautau"], sim["ztautau"], ref["htautau"], ref["ztautau"], seed=args.seed),
    }
    if args.maxima_events:
        report["maxima"] = stream_maxima(args.maxima_events, args.seed, ref)
    report["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return report


def _load(folder: str):
    """Another copy of the simulator package (see bench_simulator._load)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_simulator import _load as load_copy

    return load_copy(folder)


def stream_maxima(events: int, seed: int, ref: dict, chunk_size: int = 1_000_000) -> dict:
    """Maximum of every feature per process over ``events`` simulated events in
    the expected mix of one pseudo-experiment, streamed chunk by chunk, next to
    the reference sample's maximum."""
    import numpy as np

    from workbench.data.schema import EXPECTED_EVENTS

    total = sum(EXPECTED_EVENTS.values())
    counts = {p: max(1, round(events * EXPECTED_EVENTS[p] / total)) for p in PROCESSES}
    top = {p: {f: -np.inf for f in FEATURES} for p in PROCESSES}
    t = time.perf_counter()
    for chunk in Simulator().iter_chunks(counts, seed=seed, chunk_size=chunk_size):
        cols = chunk.columns()
        for code in np.unique(chunk.process):
            p = PROCESSES[int(code)]
            sel = chunk.process == code
            for f in FEATURES:
                top[p][f] = max(top[p][f], float(np.max(cols[f][sel])))
    return {"counts": counts, "seconds": time.perf_counter() - t,
            "sim_max": top, "ref_max": {p: {f: float(np.max(ref[p][f])) for f in FEATURES} for p in PROCESSES}}


def _short(name: str) -> str:
    return name.replace("PRI_", "").replace("DER_", "")


def markdown(report: dict) -> str:
    procs = report["processes"]
    lines = [f"# Simulator realism report ({report['events_per_process']} simulated events per process, "
             f"seed {report['seed']}, reference {report['reference']})", "",
             "Two-sample classifier: GBDT, 2-fold held-out AUC, simulated events subsampled to the "
             "reference size; null: the same AUC between two disjoint simulated samples of that size "
             f"(mean +- std over the splits, max). KS rejections at {report['alpha']:.0%}.", "",
             "| process | n ref | AUC | null AUC | (AUC - null) / std | PRI_ rejected | DER_ rejected |",
             "|---|---|---|---|---|---|---|"]
    for p, e in procs.items():
        c2, null = e["classifier_two_sample"], e["classifier_null"]
        z = (c2["auc"] - null["mean"]) / null["std"] if null["std"] > 0 else float("nan")
        lines.append(
            f"| {p} | {e['n_reference']} | {c2['auc']:.3f} | {null['mean']:.3f} +- {null['std']:.3f} "
            f"(max {max(null['values']):.3f}) | {z:+.1f} | {len(e['rejected_primary'])}/16 "
            f"{' '.join(_short(f) for f in e['rejected_primary'])} | {len(e['rejected_derived'])}/12 "
            f"{' '.join(_short(f) for f in e['rejected_derived'])} |")
    lines.append("")
    for p, e in procs.items():
        lines += [f"## {p} (reference: {e['n_reference']} real events)", "",
                  "Jet multiplicity (sigma: binomial, sqrt(p (1 - p) (1/n_ref + 1/n_sim)) at the simulated p):", "",
                  "| n_jets | sim | ref | sigma | pull |", "|---|---|---|---|---|"]
        for row in e["n_jets_table"]:
            lines.append(f"| {row['bin']} | {row['sim']:.3f} | {row['ref']:.3f} | {row['sigma']:.3f} | {row['pull']:+.1f} |")
        lines += ["", "| feature | KS D | p | sim range | ref range |", "|---|---|---|---|---|"]
        for f, v in e["ks"].items():
            rs, rr = e["ranges"]["sim"][f], e["ranges"]["ref"][f]
            flag = " **" if v["p"] < report["alpha"] else ""
            lines.append(f"| {f}{flag} | {v['ks']:.3f} | {v['p']:.3g} | {rs['min']:.4g} .. {rs['max']:.4g} "
                         f"| {rr['min']:.4g} .. {rr['max']:.4g} |")
        if "systematics" in e:
            lines += ["", "| systematic | kept nominal sim/ref | kept ratio sim/ref | d<n_jets> sim/ref | d<MET> sim/ref |",
                      "|---|---|---|---|---|"]
            for pt, v in e["systematics"].items():
                s, r = v["sim"], v["ref"]
                lines.append(f"| {pt} | {s['kept_nominal']:.3f} / {r['kept_nominal']:.3f} | {s['kept_ratio']:.3f} / {r['kept_ratio']:.3f} "
                             f"| {s['d_mean_n_jets']:+.3f} / {r['d_mean_n_jets']:+.3f} | {s['d_mean_met']:+.2f} / {r['d_mean_met']:+.2f} |")
        lines.append("")
    if "maxima" in report:
        m = report["maxima"]
        lines += [f"## Feature maxima: {sum(m['counts'].values()):,} simulated events "
                  f"({', '.join(f'{p} {n:,}' for p, n in m['counts'].items())}) vs the reference", "",
                  "| feature | " + " | ".join(f"{p} sim / ref" for p in procs) + " |",
                  "|---|" + "---|" * len(procs)]
        for f in FEATURES:
            lines.append(f"| {f} | " + " | ".join(
                f"{m['sim_max'][p][f]:.4g} / {m['ref_max'][p][f]:.4g}" for p in procs) + " |")
        lines.append("")
    s = report["separation"]
    lines += ["## Signal (htautau) vs background (ztautau) separation", "",
              "| sample | AUC DER_mass_vis | AUC GBDT (2-fold) |", "|---|---|---|"]
    for k in ("reference", "simulated_same_size", "simulated_large"):
        lines.append(f"| {k} | {s[k]['auc_mass_vis']:.3f} | {s[k]['auc_gbdt']:.3f} |")
    lines += ["", f"GBDT trained on simulated events, AUC on the real reference events: "
              f"{s['trained_on_sim_tested_on_reference']:.3f}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
