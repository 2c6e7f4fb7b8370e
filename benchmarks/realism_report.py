"""Realism report of the built-in simulator against the real reference samples.

    python benchmarks/realism_report.py [--events 50000] [--seed 1]
        [--reference /work/shared/reference-data] [--out realism_report]

Writes <out>.json and <out>.md: per-process KS distance/p-value of every
feature, jet-multiplicity fractions, classifier two-sample AUCs, signal vs
background separation (simulated vs real) and the threshold response to
tes/jes/soft_met.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from workbench.data.schema import FEATURES, PROCESSES
from workbench_builtins.generators.simulator import Simulator
from workbench_builtins.generators.simulator import validation as V


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000, help="simulated events per process")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reference", default=str(V.REFERENCE_DIR))
    ap.add_argument("--out", default="realism_report")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    events = Simulator().generate({p: args.events for p in PROCESSES}, args.seed)
    sim = V.simulated_samples(events)
    ref = V.reference_samples(args.reference)
    report: dict = {"events_per_process": args.events, "seed": args.seed, "processes": {}}
    for p in PROCESSES:
        entry = {
            "n_reference": int(len(ref[p]["PRI_lep_pt"])),
            "ks": V.ks_table(sim[p], ref[p], FEATURES),
            "n_jets_fractions": {"sim": V.jet_fractions(sim[p]), "ref": V.jet_fractions(ref[p])},
            "classifier_two_sample": V.classifier_two_sample(sim[p], ref[p], seed=args.seed),
            "systematics": {
                json.dumps(pt): {"sim": V.systematic_response(sim[p], pt),
                                 "ref": V.systematic_response(ref[p], pt)}
                for pt in V.SYSTEMATIC_POINTS
            },
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
    report["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = [f"# Simulator realism report ({report['events_per_process']} simulated events per process, seed {report['seed']})", ""]
    for p, e in report["processes"].items():
        c2 = e["classifier_two_sample"]
        lines += [f"## {p} (reference: {e['n_reference']} real events)", "",
                  f"Classifier two-sample test: AUC {c2['auc']:.3f}, p = {c2['p']:.3g} "
                  f"({c2['n_sim']} sim vs {c2['n_ref']} real, 2-fold held-out)", "",
                  "n_jets fractions (0,1,2,3,>=4): sim " + ", ".join(f"{x:.3f}" for x in e["n_jets_fractions"]["sim"])
                  + " | ref " + ", ".join(f"{x:.3f}" for x in e["n_jets_fractions"]["ref"]), "",
                  "| feature | KS | p | key |", "|---|---|---|---|"]
        for f, v in e["ks"].items():
            lines.append(f"| {f} | {v['ks']:.3f} | {v['p']:.3f} | {'*' if f in V.KEY_FEATURES else ''} |")
        lines += ["", "| systematic | kept nominal sim/ref | kept ratio sim/ref | d<n_jets> sim/ref | d<MET> sim/ref |",
                  "|---|---|---|---|---|"]
        for pt, v in e["systematics"].items():
            s, r = v["sim"], v["ref"]
            lines.append(f"| {pt} | {s['kept_nominal']:.3f} / {r['kept_nominal']:.3f} | {s['kept_ratio']:.3f} / {r['kept_ratio']:.3f} "
                         f"| {s['d_mean_n_jets']:+.3f} / {r['d_mean_n_jets']:+.3f} | {s['d_mean_met']:+.2f} / {r['d_mean_met']:+.2f} |")
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
