"""Stream template histograms from a large parquet file with bounded memory.

Writes (once) a simulated file of --events events with ``workbench simulate``
in a subprocess, trains a small xgboost classifier, then fills the nominal and
tes/jes/soft_met-shifted score templates chunk by chunk (serial, and optionally
dask row-group partitions).  Peak memory (max RSS of this process) and
throughput are reported next to the file size.

    python benchmarks/bench_streaming.py --events 20000000 --out results/bench/streaming.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--file", default="results/bench/stream-events.parquet")
    ap.add_argument("--chunk", type=int, default=1_000_000, help="rows per chunk (row group)")
    ap.add_argument("--dask", action="store_true", help="also fill via dask row-group tasks")
    ap.add_argument("--out", default="results/bench/streaming.json")
    args = ap.parse_args()

    path = Path(args.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    frac = {"htautau": 0.02, "ztautau": 0.9, "ttbar": 0.06, "diboson": 0.02}
    counts = {p: int(round(f * args.events)) for p, f in frac.items()}
    t_gen = None
    if not path.exists():
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "workbench", "simulate", "--out", str(path), "--seed", "1",
               "--chunk-size", str(args.chunk)] + [a for p, n in counts.items() for a in (f"--{p}", str(n))]
        subprocess.run(cmd, check=True)
        t_gen = time.perf_counter() - t0

    from workbench.data.io.parquet import parquet_row_groups
    from workbench.data.streaming import fill_histograms, fill_histograms_dask, iter_row_groups
    from workbench.plugin.registry import get_registry
    from workbench.systematics.nuisance import NuisanceParameters

    rows = sum(parquet_row_groups(path))
    size_mb = path.stat().st_size / 2**20

    # a small classifier trained on separate simulated events
    from workbench.plugin.protocols import TrainingData
    from workbench.systematics.engine import apply_systematics

    sim = get_registry().create("generator", "simulator")
    train = sim.generate({"htautau": 40000, "ztautau": 60000, "ttbar": 20000, "diboson": 5000}, 99)
    clf = get_registry().create("classifier", "xgboost", {"n_estimators": 100, "max_depth": 5})
    clf.fit(TrainingData(train=train, holdout=train, apply_systematics=apply_systematics,
                         sample_pseudo_experiment=None, priors={}, randomised=(),
                         mu_range=(0.1, 3.0), seed=1))
    variations = {
        "nominal": NuisanceParameters(soft_met=1.0),
        "tes_up": NuisanceParameters(tes=1.01, soft_met=1.0),
        "tes_down": NuisanceParameters(tes=0.99, soft_met=1.0),
        "jes_up": NuisanceParameters(jes=1.01, soft_met=1.0),
        "soft_met_up": NuisanceParameters(soft_met=float(np.e)),
    }
    rss_start = rss_mb()  # after training: what the fill adds on top is what streaming costs
    edges = np.linspace(0, 1, 26)
    scale = 1.0  # file weights already sum to one PE's expected yield per process
    t0 = time.perf_counter()
    hists = fill_histograms(iter_row_groups(path), clf.predict, variations, edges, 5, scale)
    t_serial = time.perf_counter() - t0
    rss_serial = rss_mb()
    result = {
        "events_in_file": rows,
        "file_mb": round(size_mb, 1),
        "row_groups": len(parquet_row_groups(path)),
        "variations": list(variations),
        "generate_s": t_gen,
        "serial_fill_s": round(t_serial, 2),
        "serial_events_per_s_per_variation": round(rows * len(variations) / t_serial),
        "peak_rss_mb_before_fill_after_training": round(rss_start, 1),
        "peak_rss_mb_after_serial_fill": round(rss_serial, 1),
        "nominal_yield": {p: float(hists["nominal"].values()[:, i].sum())
                          for i, p in enumerate(("htautau", "ztautau", "ttbar", "diboson"))},
    }
    if args.dask:
        t0 = time.perf_counter()
        dask_h = fill_histograms_dask(path, clf.predict, variations, edges, 5, None, scale)
        result["dask_threaded_fill_s"] = round(time.perf_counter() - t0, 2)
        result["dask_equals_serial"] = bool(all(
            np.allclose(dask_h[k].values(), hists[k].values(), rtol=1e-9) for k in hists))
        result["peak_rss_mb_after_dask_fill"] = round(rss_mb(), 1)
    print(json.dumps(result, indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
